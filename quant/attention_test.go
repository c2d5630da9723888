package quant

import (
	"testing"

	"github.com/stretchr/testify/require"
	"github.com/vkattn/vkattn/attention/reference"
)

// decodeProblem is a decode step: a packed batch of a few new tokens per sequence against long
// keys, grouped heads, causal (the new tokens are the keys' last ones).
func decodeProblem(hq, hk, d int, lq, lk []int) reference.Params {
	return reference.Params{Hq: hq, Hk: hk, D: d, CuSeqlensQ: reference.Cumulative(lq), CuSeqlensK: reference.Cumulative(lk),
		Causal: true, WindowLeft: -1, WindowRight: -1}
}

type accuracy struct{ cos, relL1 float64 }

func measure(t *testing.T, p reference.Params, q, k, v []float32, kf, vf Format, o AttentionOptions, keysForK []float32) accuracy {
	t.Helper()
	want, _, err := reference.Forward(p, widen(q), widen(k), widen(v))
	require.NoError(t, err)
	if keysForK == nil {
		keysForK = k
	}
	kq, err := Quantize(kf, keysForK, p.TotalK(), p.Hk, p.D)
	require.NoError(t, err)
	vq, err := Quantize(vf, v, p.TotalK(), p.Hk, p.HeadDimV())
	require.NoError(t, err)
	got, _, err := Attention(p, q, kq, vq, o)
	require.NoError(t, err)
	return accuracy{CosineSimilarity(got, want), RelativeL1(got, want)}
}

// Attention over INT8 and INT4 K/V (and FP8 queries) on Gaussian data against the float64
// oracle on the unquantized data: cosine similarity and relative L1 within the gates, for every
// head dim (go test -v prints them). INT8 is held to 0.9995 cosine. INT4 is held to 0.985, not
// the 0.99 wanted: 1 - cosine is about the mean of K's and V's relative squared quantization
// error, which for 4-bit codes with one scale per 128 channels (or one head) is about 0.0106
// with the signed absmax/8 scale (0.0137 with FireQ's absmax/7), so INT4 K and V give 0.9875
// to 0.9930 over head dims and seeds (about 0.9894 at d = 128, 0.9891 with FP8 queries).
// Lowering the keys' squared error further, by clipping each group to the scale of least
// squared error or by levels denser near 0, reaches about 0.991, but on TestRoPEAwareInt4's
// keys (V unquantized, mean of 16 draws) the scaled variants fall from about 0.976 to
// 0.95-0.97: it moves error onto the largest elements, which decide the highest scores.
func TestQuantizedAttentionGaussian(t *testing.T) {
	r := newRand(t)
	for _, d := range headDims {
		lk := []int{1500, 623, 1024}
		if d != 128 {
			lk = []int{700, 301}
		}
		lq := make([]int, len(lk))
		for i := range lq {
			lq[i] = min(lk[i], []int{1, 16, 4}[i])
		}
		p := decodeProblem(8, 2, d, lq, lk)
		q := gaussian(r, p.TotalQ()*p.Hq*d, 1)
		k := gaussian(r, p.TotalK()*p.Hk*d, 1)
		v := gaussian(r, p.TotalK()*p.Hk*d, 1)
		for _, c := range []struct {
			name       string
			kv         Format
			fp8        bool
			cos, relL1 float64
		}{
			{"int8", Int8, false, 0.9995, 0.015},
			{"int8+fp8q", Int8, true, 0.9990, 0.04},
			{"int4", Int4, false, 0.985, 0.17},
			{"int4+fp8q", Int4, true, 0.985, 0.17},
		} {
			a := measure(t, p, q, k, v, c.kv, c.kv, AttentionOptions{FP8Queries: c.fp8}, nil)
			t.Logf("d=%3d %-9s cosine %.6f relative L1 %.4f", d, c.name, a.cos, a.relL1)
			require.GreaterOrEqual(t, a.cos, c.cos, "d=%d %s", d, c.name)
			require.LessOrEqual(t, a.relL1, c.relL1, "d=%d %s", d, c.name)
		}
	}
}

// FireQ's RoPE-aware key scaling on keys with outlier channels: INT4 attention with scales
// calibrated on other keys of the same distribution is more accurate than without.
func TestRoPEAwareInt4(t *testing.T) {
	r := newRand(t)
	const hq, hk, d = 8, 2, 128
	for _, interleaved := range []bool{false, true} {
		p := decodeProblem(hq, hk, d, []int{4, 1}, []int{1200, 800})
		spread := outlierSpread(r, hk, d)
		calib := narrow(rope(keysWith(r, spread, 512, hk, d, interleaved), hk, d, interleaved))
		k := narrow(rope(keysWith(r, spread, p.TotalK(), hk, d, interleaved), hk, d, interleaved))
		q := gaussian(r, p.TotalQ()*hq*d, 1)
		v := gaussian(r, p.TotalK()*hk*d, 1)
		results := map[string]accuracy{}
		for _, c := range []struct {
			name string
			cal  *Calibration
		}{
			{"none", nil},
			{"pairs", &Calibration{TopK: -1, Interleaved: interleaved}},
			{"pairs+top-k", &Calibration{Interleaved: interleaved}},
		} {
			var o AttentionOptions
			keys := k
			if c.cal != nil {
				ks, err := CalibrateKeys(calib, 512, hk, d, *c.cal)
				require.NoError(t, err)
				o.Scales = ks
				keys, err = ks.ScaleKeys(k)
				require.NoError(t, err)
			}
			results[c.name] = measure(t, p, q, k, v, Int4, Int4, o, keys)
			kOnly := measure(t, p, q, k, v, Int4, Int8, o, keys) // the keys' share of the error
			t.Logf("interleaved=%v %-11s cosine %.6f relative L1 %.4f (int8 V: cosine %.6f)", interleaved, c.name,
				results[c.name].cos, results[c.name].relL1, kOnly.cos)
		}
		none := results["none"]
		for _, name := range []string{"pairs", "pairs+top-k"} {
			require.GreaterOrEqual(t, results[name].cos, none.cos, name)
			require.LessOrEqual(t, results[name].relL1, none.relL1, name)
		}
	}
}

// On inputs that each format represents exactly, Attention is the oracle itself, bit for bit:
// the plumbing (shapes, groups, GQA, varlen, FP8 queries) loses nothing.
func TestAttentionExactInputs(t *testing.T) {
	r := newRand(t)
	for _, f := range []Format{Int8, Int4} {
		for _, d := range []int{64, 256} {
			p := decodeProblem(6, 3, d, []int{2, 1, 0, 5}, []int{9, 1, 4, 40})
			p.Causal = false
			// code·scale for scales ±1: each group of Int8 holding ±127, of Int4 code -8 (so
			// -8·scale, and 0·-1 = -0 where the scale is -1, as a kernel dequantizes it).
			exact := func(n int) []float32 {
				x := make([]float32, n)
				gs := f.GroupSize(d)
				var s float32
				for i := range x {
					if i%gs == 0 {
						s = float32(2*r.IntN(2) - 1)
					}
					switch {
					case f == Int8 && i%gs == 0:
						x[i] = 127 * s
					case f == Int8:
						x[i] = float32(r.IntN(255) - 127)
					case i%gs == 0:
						x[i] = -8 * s
					default:
						x[i] = float32(r.IntN(16)-8) * s
					}
				}
				return x
			}
			k, v := exact(p.TotalK()*p.Hk*d), exact(p.TotalK()*p.Hk*d)
			q := make([]float32, p.TotalQ()*p.Hq*d) // E4M3 codes, each row holding ±448
			for i := range q {
				q[i] = DecodeE4M3(uint8(r.IntN(0x7f)) | uint8(r.IntN(2))<<7)
				if i%d == 0 {
					q[i] = 448
				}
			}
			kq, err := Quantize(f, k, p.TotalK(), p.Hk, d)
			require.NoError(t, err)
			vq, err := Quantize(f, v, p.TotalK(), p.Hk, d)
			require.NoError(t, err)
			require.Equal(t, f32bits(k), f32bits(kq.Dequantize()))
			want, wantLSE, err := reference.Forward(p, widen(q), widen(k), widen(v))
			require.NoError(t, err)
			for _, fp8 := range []bool{false, true} {
				got, lse, err := Attention(p, q, kq, vq, AttentionOptions{FP8Queries: fp8})
				require.NoError(t, err)
				require.Equal(t, want, got, "%v d=%d fp8=%v", f, d, fp8)
				require.Equal(t, wantLSE, lse)
			}
		}
	}
}

func TestAttentionErrors(t *testing.T) {
	p := decodeProblem(4, 2, 64, []int{1}, []int{3})
	q := make([]float32, 4*64)
	kv := make([]float32, 3*2*64)
	k, err := Quantize(Int8, kv, 3, 2, 64)
	require.NoError(t, err)
	short, err := Quantize(Int8, kv[:2*2*64], 2, 2, 64)
	require.NoError(t, err)
	_, _, err = Attention(p, q, k, k, AttentionOptions{})
	require.NoError(t, err)
	_, _, err = Attention(p, q, short, k, AttentionOptions{})
	require.ErrorContains(t, err, "k is")
	_, _, err = Attention(p, q, k, short, AttentionOptions{})
	require.ErrorContains(t, err, "v is")
	_, _, err = Attention(p, q, nil, k, AttentionOptions{})
	require.Error(t, err)
	_, _, err = Attention(p, q[:10], k, k, AttentionOptions{})
	require.ErrorContains(t, err, "q has")
	ks, err := CalibrateKeys(kv, 3, 1, 128, Calibration{})
	require.NoError(t, err)
	_, _, err = Attention(p, q, k, k, AttentionOptions{Scales: ks})
	require.ErrorContains(t, err, "key scales")
	p.Hq = 3
	_, _, err = Attention(p, q, k, k, AttentionOptions{})
	require.Error(t, err)
}
