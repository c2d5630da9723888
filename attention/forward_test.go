package attention_test

import (
	"context"
	"testing"

	"github.com/vkattn/vkattn/attention"
	"github.com/vkattn/vkattn/attention/conformance"
)

// TestForwardConformance runs the conformance suite's forward cases: the matrix at every tier the
// device runs, each tier forced, and through the naive baseline (TestDecodeConformance runs the
// decode cases). A failure prints the seed; VKATTN_SEED replays it.
func TestForwardConformance(t *testing.T) {
	e := engine(t)
	if len(e.ForwardTiers()) == 0 {
		t.Fatalf("%s runs no forward tier", e.Profile().Name)
	}
	tiers, cases := conformance.Selection{NoDecode: true}.Cases(e)
	for _, tier := range tiers {
		t.Run(tier, func(t *testing.T) {
			for _, c := range cases {
				if c.TierName() != tier {
					continue
				}
				t.Run(c.String(), func(t *testing.T) {
					engine(t)
					o := conformance.Run(context.Background(), e, c, seed(t))
					if !o.Passed() {
						t.Fatalf("%s kernel %s: %s", c, o.Kernel, o.Error)
					}
					if c.Naive && o.Kernel != attention.NaiveKernel {
						t.Fatalf("%s ran kernel %s, want %s", c, o.Kernel, attention.NaiveKernel)
					}
				})
			}
		})
	}
}
