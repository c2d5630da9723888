// Package reference is the float64 CPU oracle that every vkattn kernel is checked against. It
// computes attention the plain way — every score, an exact softmax, one weighted sum — in
// float64, with the same masking, soft-capping, grouped heads and variable-length batches as the
// kernels.
//
// Layouts are token-major, as in flash_attn_varlen_func: q is [TotalQ][Hq][D], k is
// [TotalK][Hk][D], v is [TotalK][Hk][DV], the output o is [TotalQ][Hq][DV] and the row
// logsumexp is [TotalQ][Hq]. Sequence b owns query tokens CuSeqlensQ[b]..CuSeqlensQ[b+1] and
// key tokens CuSeqlensK[b]..CuSeqlensK[b+1]. A dense batch [B][L][H][D] is the same memory
// with Uniform offsets.
package reference

import (
	"errors"
	"fmt"
	"math"
)

// Params describes one attention computation.
type Params struct {
	Hq, Hk int // query heads and key/value heads; Hq must be a multiple of Hk
	D      int // query/key head dimension
	DV     int // value head dimension; 0 means D

	// CuSeqlensQ and CuSeqlensK are the cumulative token offsets of the sequences: B+1
	// non-decreasing entries starting at 0.
	CuSeqlensQ, CuSeqlensK []int

	Scale float64 // multiplies q·k; 0 means 1/sqrt(D)

	// Causal lets query i of a sequence see keys up to i + lk - lq (bottom-right aligned).
	Causal bool
	// WindowLeft and WindowRight bound the keys query i sees to
	// [i + lk - lq - WindowLeft, i + lk - lq + WindowRight]; -1 means unbounded on that side.
	// Note that 0 is a real bound: set both to -1 for no window. With Causal, WindowRight is 0.
	WindowLeft, WindowRight int

	// Softcap, if positive, replaces each scaled score s by Softcap * tanh(s / Softcap).
	Softcap float64
}

// Validate reports the first inconsistency in p.
func (p Params) Validate() error {
	switch {
	case p.Hq <= 0 || p.Hk <= 0:
		return fmt.Errorf("reference: heads must be positive, got Hq=%d Hk=%d", p.Hq, p.Hk)
	case p.Hq%p.Hk != 0:
		return fmt.Errorf("reference: Hq=%d is not a multiple of Hk=%d", p.Hq, p.Hk)
	case p.D <= 0 || p.DV < 0:
		return fmt.Errorf("reference: head dims must be positive, got D=%d DV=%d", p.D, p.DV)
	case p.WindowLeft < -1 || p.WindowRight < -1:
		return fmt.Errorf("reference: window bounds must be >= -1, got (%d, %d)", p.WindowLeft, p.WindowRight)
	case p.Softcap < 0 || math.IsNaN(p.Softcap) || math.IsInf(p.Softcap, 0):
		return fmt.Errorf("reference: softcap must be finite and >= 0, got %v", p.Softcap)
	case math.IsNaN(p.Scale) || math.IsInf(p.Scale, 0):
		return fmt.Errorf("reference: scale must be finite, got %v", p.Scale)
	}
	if err := checkCumulative("CuSeqlensQ", p.CuSeqlensQ); err != nil {
		return err
	}
	if err := checkCumulative("CuSeqlensK", p.CuSeqlensK); err != nil {
		return err
	}
	if len(p.CuSeqlensQ) != len(p.CuSeqlensK) {
		return fmt.Errorf("reference: CuSeqlensQ has %d sequences, CuSeqlensK %d",
			len(p.CuSeqlensQ)-1, len(p.CuSeqlensK)-1)
	}
	return nil
}

func checkCumulative(name string, cu []int) error {
	if len(cu) < 2 {
		return fmt.Errorf("reference: %s needs at least 2 entries, got %d", name, len(cu))
	}
	if cu[0] != 0 {
		return fmt.Errorf("reference: %s[0] must be 0, got %d", name, cu[0])
	}
	for i := 1; i < len(cu); i++ {
		if cu[i] < cu[i-1] {
			return fmt.Errorf("reference: %s decreases at %d: %d < %d", name, i, cu[i], cu[i-1])
		}
	}
	return nil
}

// Batch is the number of sequences.
func (p Params) Batch() int { return len(p.CuSeqlensQ) - 1 }

// TotalQ is the number of query tokens of all sequences.
func (p Params) TotalQ() int { return p.CuSeqlensQ[len(p.CuSeqlensQ)-1] }

// TotalK is the number of key tokens of all sequences.
func (p Params) TotalK() int { return p.CuSeqlensK[len(p.CuSeqlensK)-1] }

// HeadDimV is the value head dimension.
func (p Params) HeadDimV() int {
	if p.DV == 0 {
		return p.D
	}
	return p.DV
}

// EffectiveScale is the factor applied to q·k.
func (p Params) EffectiveScale() float64 {
	if p.Scale == 0 {
		return 1 / math.Sqrt(float64(p.D))
	}
	return p.Scale
}

// Visible reports whether query i sees key j in a sequence of lq queries and lk keys.
func (p Params) Visible(i, j, lq, lk int) bool {
	diag := i + lk - lq
	right := p.WindowRight
	if p.Causal {
		right = 0
	}
	// Differences, not sums, so bounds up to MaxInt do not overflow.
	if right >= 0 && j-diag > right {
		return false
	}
	if p.WindowLeft >= 0 && diag-j > p.WindowLeft {
		return false
	}
	return true
}

// Scores returns the transformed scores of sequence b, query head h: an lq x lk row-major
// matrix of scale·q·k (soft-capped) with -Inf where the key is masked.
func (p Params) Scores(q, k []float64, b, h int) ([]float64, error) {
	if err := p.checkInputs(q, k, nil); err != nil {
		return nil, err
	}
	if b < 0 || b >= p.Batch() || h < 0 || h >= p.Hq {
		return nil, fmt.Errorf("reference: sequence %d head %d out of range", b, h)
	}
	q0, lq := p.CuSeqlensQ[b], p.CuSeqlensQ[b+1]-p.CuSeqlensQ[b]
	k0, lk := p.CuSeqlensK[b], p.CuSeqlensK[b+1]-p.CuSeqlensK[b]
	s := make([]float64, lq*lk)
	for i := 0; i < lq; i++ {
		p.scoreRow(s[i*lk:(i+1)*lk], q, k, q0+i, k0, i, lq, lk, h)
	}
	return s, nil
}

// scoreRow fills s (lk values) with the scores of query token t (row i of its sequence) against
// the sequence's keys starting at token k0, for query head h.
func (p Params) scoreRow(s, q, k []float64, t, k0, i, lq, lk, h int) {
	kh := h / (p.Hq / p.Hk)
	scale := p.EffectiveScale()
	qi := q[(t*p.Hq+h)*p.D:][:p.D]
	for j := 0; j < lk; j++ {
		if !p.Visible(i, j, lq, lk) {
			s[j] = math.Inf(-1)
			continue
		}
		kj := k[((k0+j)*p.Hk+kh)*p.D:][:p.D]
		dot := 0.0
		for c, x := range qi {
			dot += x * kj[c]
		}
		x := scale * dot
		if p.Softcap > 0 {
			x = p.Softcap * math.Tanh(x/p.Softcap)
		}
		s[j] = x
	}
}

func (p Params) checkInputs(q, k, v []float64) error {
	if err := p.Validate(); err != nil {
		return err
	}
	if want := p.TotalQ() * p.Hq * p.D; len(q) != want {
		return fmt.Errorf("reference: q has %d values, want %d", len(q), want)
	}
	if want := p.TotalK() * p.Hk * p.D; len(k) != want {
		return fmt.Errorf("reference: k has %d values, want %d", len(k), want)
	}
	if want := p.TotalK() * p.Hk * p.HeadDimV(); v != nil && len(v) != want {
		return fmt.Errorf("reference: v has %d values, want %d", len(v), want)
	}
	return nil
}

// Forward computes o = softmax(scores) v and the row logsumexp of the scores. A query row that
// sees no key has o = 0 and logsumexp = -Inf. NaN or Inf in an input row spreads only to the
// outputs that read it.
func Forward(p Params, q, k, v []float64) (o, lse []float64, err error) {
	if err := p.checkInputs(q, k, v); err != nil {
		return nil, nil, err
	}
	tokens := make([]int, p.TotalQ())
	for t := range tokens {
		tokens[t] = t
	}
	o, lse = p.rows(q, k, v, tokens)
	return o, lse, nil
}

// ForwardRows is Forward for the given query tokens only (indices into q's token dimension):
// o is [len(tokens)][Hq][DV] and lse [len(tokens)][Hq]. It checks a sample of a problem too large
// to compute whole.
func ForwardRows(p Params, q, k, v []float64, tokens []int) (o, lse []float64, err error) {
	if err := p.checkInputs(q, k, v); err != nil {
		return nil, nil, err
	}
	for _, t := range tokens {
		if t < 0 || t >= p.TotalQ() {
			return nil, nil, fmt.Errorf("reference: query token %d out of range [0, %d)", t, p.TotalQ())
		}
	}
	o, lse = p.rows(q, k, v, tokens)
	return o, lse, nil
}

// rows computes the output rows of the given query tokens, all heads.
func (p Params) rows(q, k, v []float64, tokens []int) (o, lse []float64) {
	dv := p.HeadDimV()
	o = make([]float64, len(tokens)*p.Hq*dv)
	lse = make([]float64, len(tokens)*p.Hq)
	var s []float64
	for r, t := range tokens {
		b := p.sequenceOf(t)
		q0, lq := p.CuSeqlensQ[b], p.CuSeqlensQ[b+1]-p.CuSeqlensQ[b]
		k0, lk := p.CuSeqlensK[b], p.CuSeqlensK[b+1]-p.CuSeqlensK[b]
		if cap(s) < lk {
			s = make([]float64, lk)
		}
		s = s[:lk]
		for h := 0; h < p.Hq; h++ {
			kh := h / (p.Hq / p.Hk)
			p.scoreRow(s, q, k, t, k0, t-q0, lq, lk, h)
			out := o[(r*p.Hq+h)*dv:][:dv]
			m := math.Inf(-1)
			for _, x := range s {
				if x > m || math.IsNaN(x) {
					m = x
				}
			}
			if math.IsInf(m, -1) { // nothing visible
				lse[r*p.Hq+h] = m
				continue
			}
			sum := 0.0
			for j, x := range s {
				if math.IsInf(x, -1) {
					continue
				}
				w := math.Exp(x - m)
				if w == 0 { // adds nothing, even where v is NaN or Inf
					continue
				}
				sum += w
				vj := v[((k0+j)*p.Hk+kh)*dv:][:dv]
				for c := range out {
					out[c] += w * vj[c]
				}
			}
			for c := range out {
				out[c] /= sum
			}
			lse[r*p.Hq+h] = m + math.Log(sum)
		}
	}
	return o, lse
}

// sequenceOf returns the sequence that owns query token t.
func (p Params) sequenceOf(t int) int {
	b := 0
	for t >= p.CuSeqlensQ[b+1] {
		b++
	}
	return b
}

// Merge combines the results of attention over two disjoint key sets of the same queries into
// the result over their union: rows of width dv, o1 and o2 weighted by exp(lse - lse_total).
// A row empty in both stays 0 with logsumexp -Inf.
func Merge(o1, lse1, o2, lse2 []float64, dv int) (o, lse []float64, err error) {
	if dv <= 0 || len(lse1) != len(lse2) || len(o1) != len(lse1)*dv || len(o2) != len(o1) {
		return nil, nil, errors.New("reference: Merge needs equal-length partials of rows of width dv")
	}
	o = make([]float64, len(o1))
	lse = make([]float64, len(lse1))
	for r := range lse1 {
		a, b := lse1[r], lse2[r]
		m := math.Max(a, b)
		if math.IsInf(m, -1) {
			lse[r] = m
			continue
		}
		wa, wb := math.Exp(a-m), math.Exp(b-m)
		total := wa + wb
		lse[r] = m + math.Log(total)
		wa, wb = wa/total, wb/total
		for c := r * dv; c < (r+1)*dv; c++ {
			o[c] = wa*o1[c] + wb*o2[c]
		}
	}
	return o, lse, nil
}

// Uniform returns the cumulative offsets of batch sequences of n tokens each.
func Uniform(batch, n int) []int {
	cu := make([]int, batch+1)
	for i := range cu {
		cu[i] = i * n
	}
	return cu
}

// Cumulative returns the cumulative offsets of sequences with the given lengths.
func Cumulative(lens []int) []int {
	cu := make([]int, len(lens)+1)
	for i, n := range lens {
		cu[i+1] = cu[i] + n
	}
	return cu
}
