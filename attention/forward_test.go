package attention_test

import (
	"testing"

	"github.com/vkattn/vkattn/attention"
	"github.com/vkattn/vkattn/devices"
	"github.com/vkattn/vkattn/memory"
)

// tiersOf lists the tiers the engine's device runs, each a forced choice in the tests.
func tiersOf(e *attention.Engine) []devices.Tier {
	var out []devices.Tier
	for _, t := range devices.Tiers {
		if e.Profile().Supports(t) && hasForward(t) {
			out = append(out, t)
		}
	}
	return out
}

func hasForward(t devices.Tier) bool { return t == devices.TierScalar || t == devices.TierSubgroup }

// forwardCases is the conformance matrix of the forward kernels at one tier.
func forwardCases(tier devices.Tier) []fcase {
	var cs []fcase
	// Every dtype and head dim; odd lengths, a batch, GQA.
	for _, dt := range []memory.DType{memory.F32, memory.F16, memory.BF16} {
		for _, d := range attention.HeadDims {
			cs = append(cs, fcase{dtype: dt, d: d, hq: 4, hk: 2, lq: []int{37}, lk: []int{45}, batch: 2, tier: tier})
		}
	}
	base := fcase{dtype: memory.F32, d: 64, hq: 4, hk: 4, tier: tier}
	with := func(f func(*fcase)) {
		c := base
		f(&c)
		cs = append(cs, c)
	}
	// Masks: causal at Lq < Lk, Lq = Lk, Lq > Lk (rows with no key); windows; softcap.
	for _, l := range [][2]int{{19, 70}, {64, 64}, {70, 19}, {1, 129}} {
		with(func(c *fcase) { c.lq, c.lk, c.causal = []int{l[0]}, []int{l[1]}, true })
	}
	for _, w := range []attention.Window{{3, 0}, {16, 4}, {-1, 2}, {5, -1}, {0, 0}} {
		with(func(c *fcase) { c.lq, c.lk, c.window = []int{50}, []int{61}, &w })
	}
	with(func(c *fcase) { c.lq, c.lk, c.window, c.causal = []int{50}, []int{61}, &attention.Window{Left: 7, Right: 9}, true })
	with(func(c *fcase) { c.lq, c.lk, c.softcap = []int{33}, []int{47}, 5 })
	with(func(c *fcase) { c.lq, c.lk, c.softcap, c.causal, c.dtype = []int{33}, []int{47}, 2, true, memory.F16 })
	with(func(c *fcase) { c.lq, c.lk, c.scale = []int{17}, []int{31}, 0.3 })
	// Lengths 1 and primes.
	for _, l := range [][2]int{{1, 1}, {1, 17}, {17, 1}, {31, 127}, {127, 31}} {
		with(func(c *fcase) { c.lq, c.lk = []int{l[0]}, []int{l[1]} })
	}
	// GQA and MQA.
	for _, h := range [][2]int{{8, 1}, {6, 2}, {3, 3}} {
		with(func(c *fcase) { c.hq, c.hk, c.lq, c.lk = h[0], h[1], []int{29}, []int{41} })
	}
	// Varlen batches, with an empty query sequence and a one-token one.
	for _, causal := range []bool{false, true} {
		with(func(c *fcase) {
			c.varlen, c.causal, c.hq, c.hk = true, causal, 4, 2
			c.lq, c.lk = []int{5, 0, 1, 33, 17}, []int{7, 3, 1, 33, 40}
		})
	}
	with(func(c *fcase) { c.varlen, c.lq, c.lk, c.dtype, c.d = true, []int{40, 9}, []int{9, 40}, memory.BF16, 128 })
	with(func(c *fcase) { c.lq, c.lk, c.noLSE, c.batch = []int{21}, []int{21}, true, 3 })
	return cs
}

func TestForwardConformance(t *testing.T) {
	e := engine(t)
	tiers := tiersOf(e)
	if len(tiers) == 0 {
		t.Fatalf("%s runs no forward tier", e.Profile().Name)
	}
	for _, tier := range tiers {
		t.Run(tier.String(), func(t *testing.T) {
			for _, c := range forwardCases(tier) {
				t.Run(c.String(), func(t *testing.T) {
					engine(t)
					runCase(t, e, c, seed(t))
				})
			}
		})
	}
}
