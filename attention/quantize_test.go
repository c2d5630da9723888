package attention_test

import (
	"context"
	"fmt"
	"math"
	"math/rand/v2"
	"testing"

	"github.com/stretchr/testify/require"
	"github.com/vkattn/vkattn/attention"
	"github.com/vkattn/vkattn/attention/conformance"
	"github.com/vkattn/vkattn/memory"
	"github.com/vkattn/vkattn/quant"
)

var quantizeFormats = []quant.Format{quant.Int8, quant.Int4, quant.E4M3}

// quantizeInput draws rows x dim values for format f, stored as dt (already rounded to it):
// group g of the rows is, by g's kind, Gaussian at a random power-of-two scale; all zero (some
// -0); tiny (below quant.MinScale once scaled, where dt holds such values); Gaussian with a NaN;
// with +Inf or -Inf; with both +absmax and -absmax; all negative; or at the exact rounding
// midpoints of a scale the group's absmax gives exactly (and, in f32, their neighbours).
func quantizeInput(r *rand.Rand, f quant.Format, dt memory.DType, rows, dim int) []float32 {
	gs := f.GroupSize(dim)
	x := make([]float32, rows*dim)
	first := r.IntN(8)
	for g := range rows * dim / gs {
		xs := x[g*gs : (g+1)*gs]
		gauss := func(scale float32) {
			for i := range xs {
				xs[i] = float32(r.NormFloat64()) * scale
			}
		}
		switch (first + g) % 8 {
		case 0:
			gauss(float32(math.Ldexp(1, r.IntN(7)-3)))
		case 1:
			for i := range xs {
				if r.IntN(2) == 0 {
					xs[i] = float32(math.Copysign(0, -1))
				}
			}
		case 2: // tiny: below MinScale; for f16, subnormals (1e-32 would round to 0)
			if dt == memory.F16 {
				gauss(1e-6)
			} else {
				gauss(1e-32)
			}
		case 3:
			gauss(1)
			xs[r.IntN(gs)] = float32(math.NaN())
		case 4:
			gauss(1)
			xs[r.IntN(gs)] = float32(math.Inf(1 - 2*r.IntN(2)))
		case 5:
			gauss(1)
			var a float32
			for _, v := range xs {
				a = max(a, float32(math.Abs(float64(dt.Round(v)))))
			}
			i := r.IntN(gs)
			j := (i + 1 + r.IntN(gs-1)) % gs
			xs[i], xs[j] = a, -a
		case 6:
			gauss(1)
			for i, v := range xs {
				xs[i] = -float32(math.Abs(float64(v)))
			}
		case 7:
			midpoints(r, f, dt, xs)
		}
	}
	for i, v := range x {
		x[i] = dt.Round(v)
	}
	return x
}

// midpoints fills xs with values at the rounding midpoints of format f under a scale s that the
// group's absmax (one element of xs, of either sign) gives exactly; some at codes exactly; in
// f32 some a float32 ulp beside a midpoint. All are exact in dt.
func midpoints(r *rand.Rand, f quant.Format, dt memory.DType, xs []float32) {
	s := float32(math.Ldexp(1, -1-r.IntN(3))) // a power of two: midpoints fit 16-bit types
	if dt == memory.F32 {
		s = quant.BF16Value(quant.BF16Bits(float32(0.5+r.Float64()) * float32(math.Ldexp(1, r.IntN(9)-4))))
	}
	sign := func() float32 { return float32(1 - 2*r.IntN(2)) }
	for i := range xs {
		var v float32
		switch f {
		case quant.Int8:
			v = (float32(r.IntN(254)-127) + 0.5) * s // -126.5 .. 126.5
		case quant.Int4:
			v = (float32(r.IntN(15)-8) + 0.5) * s // -7.5 .. 6.5
		case quant.E4M3:
			c := uint8(r.IntN(126))
			v = sign() * (quant.DecodeE4M3(c) + quant.DecodeE4M3(c+1)) / 2 * s
		}
		switch k := r.IntN(8); {
		case k == 0: // a code exactly
			v = float32(math.Round(float64(v/s))) * s
		case k == 1 && dt == memory.F32:
			v = math.Nextafter32(v, float32(math.Inf(1)))
		case k == 2 && dt == memory.F32:
			v = math.Nextafter32(v, float32(math.Inf(-1)))
		}
		xs[i] = v
	}
	xs[r.IntN(len(xs))] = sign() * f.Max() * s // absmax: bf16(absmax * R) is s
}

// rawQuantized returns x's codes and scales as quant.Tensor's WordBytes and ScaleBytes lay them
// out, the scales with the half word after an odd count; a paged QuantizedKVCache's views are
// gathered first (attention.GatherQuantized).
func rawQuantized(t *testing.T, x *attention.Quantized) (words, scales []byte) {
	t.Helper()
	if _, pages := x.Codes.Pages(); pages != nil {
		g, err := attention.GatherQuantized(context.Background(), x)
		require.NoError(t, err)
		defer g.Close()
		x = g
	}
	for _, p := range []struct {
		t   *memory.Tensor
		out *[]byte
	}{{x.Codes, &words}, {x.Scales, &scales}} {
		n := p.t.Len()
		if p.t.DType == memory.BF16 {
			n += n % 2
		}
		vals := download(t, view(t, p.t, []int{n}, []int{1}, p.t.Offset))
		b := make([]byte, 0, n*p.t.DType.Size())
		for _, v := range vals {
			u := math.Float32bits(v)
			if p.t.DType == memory.BF16 {
				b = append(b, byte(u>>16), byte(u>>24))
			} else {
				b = append(b, byte(u), byte(u>>8), byte(u>>16), byte(u>>24))
			}
		}
		*p.out = b
	}
	return words, scales
}

// requireSameQuantized fails unless the device's codes and scales are want's, bit for bit.
func requireSameQuantized(t *testing.T, want *quant.Tensor, got *attention.Quantized) {
	t.Helper()
	require.Equal(t, want.Format, got.Format)
	words, scales := rawQuantized(t, got)
	ww, ws := want.WordBytes(), want.ScaleBytes()
	require.Len(t, words, len(ww))
	require.Len(t, scales, len(ws))
	per := want.Format.PerWord()
	for i := 0; i < len(ww); i += 4 {
		if string(words[i:i+4]) != string(ww[i:i+4]) {
			w := i / 4
			row := w / (want.Dim / per)
			t.Fatalf("word %d (row %d, channels %d..): got % x, want % x", w, row, w%(want.Dim/per)*per, words[i:i+4], ww[i:i+4])
		}
	}
	for i := 0; i < 2*len(want.Scales); i += 2 { // the half after an odd count is not the tensor's
		if string(scales[i:i+2]) != string(ws[i:i+2]) {
			t.Fatalf("scale %d: got %#04x, want %#04x", i/2, uint16(scales[i])|uint16(scales[i+1])<<8, uint16(ws[i])|uint16(ws[i+1])<<8)
		}
	}
}

// poisonedQuantized allocates the codes and scales of a [tokens, heads, dim] tensor in format f,
// every word (the scales' padding too) poisoned.
func poisonedQuantized(t *testing.T, e *attention.Engine, f quant.Format, tokens, heads, dim int) *attention.Quantized {
	t.Helper()
	out := &attention.Quantized{Format: f,
		Codes:  newTensor(t, e, memory.F32, tokens, heads, dim/f.PerWord()),
		Scales: newTensor(t, e, memory.BF16, tokens, heads, f.Groups(dim))}
	n := out.Scales.Len()
	require.NoError(t, out.Codes.Fill(context.Background(), conformance.Poison))
	require.NoError(t, view(t, out.Scales, []int{n + n%2}, []int{1}, 0).Fill(context.Background(), conformance.Poison))
	return out
}

// TestQuantizeMatchesCPU: for each format and input type, over shapes with odd token counts and
// every group layout (Int4's 128-channel groups at dims 128 and 256, one group at 64 and 80),
// and groups that are Gaussian, zero, tiny, non-finite, with +absmax and -absmax both, or at
// rounding midpoints, the device's codes and scales are quant.Quantize's bit for bit, every
// poisoned word written.
func TestQuantizeMatchesCPU(t *testing.T) {
	e := engine(t)
	ctx := context.Background()
	r := replayedRand(t, 0x9a11)
	shapes := [][3]int{{1, 1, 64}, {7, 3, 64}, {5, 2, 80}, {3, 3, 128}, {9, 2, 128}, {3, 1, 256}, {4, 3, 256}}
	for _, f := range quantizeFormats {
		for _, dt := range []memory.DType{memory.F32, memory.F16, memory.BF16} {
			for _, sh := range shapes {
				tokens, heads, dim := sh[0], sh[1], sh[2]
				t.Run(fmt.Sprintf("%v/%v/%dx%dx%d", f, dt, tokens, heads, dim), func(t *testing.T) {
					x := quantizeInput(r, f, dt, tokens*heads, dim)
					want, err := quant.Quantize(f, x, tokens, heads, dim)
					require.NoError(t, err)
					out := poisonedQuantized(t, e, f, tokens, heads, dim)
					require.NoError(t, e.QuantizeInto(ctx, out, upload(t, e, dt, x, tokens, heads, dim)))
					requireSameQuantized(t, want, out)
				})
			}
		}
	}
}

// TestQuantizeLayouts: Quantize allocates its result, shaped as x, for [B, L, H, D] inputs and
// for strided ones (padded heads, an offset; the padding NaN, never read), into scales at an
// even offset of a larger tensor, and many groups (the grid loops).
func TestQuantizeLayouts(t *testing.T) {
	e := engine(t)
	ctx := context.Background()
	r := replayedRand(t, 0x9a12)
	for _, f := range quantizeFormats {
		for _, dt := range []memory.DType{memory.F32, memory.BF16} {
			t.Run(fmt.Sprintf("%v/%v", f, dt), func(t *testing.T) {
				// Dense [2, 3, 2, 128].
				x := quantizeInput(r, f, dt, 12, 128)
				want, err := quant.Quantize(f, x, 6, 2, 128)
				require.NoError(t, err)
				got, err := e.Quantize(ctx, f, upload(t, e, dt, x, 2, 3, 2, 128))
				require.NoError(t, err)
				t.Cleanup(got.Close)
				require.Equal(t, []int{2, 3, 2, 128}, got.Shape())
				requireSameQuantized(t, want, got)

				// Strided: [5, 3, 64] in rows of 72 from element 8.
				const tokens, heads, dim, pad = 5, 3, 64, 8
				x = quantizeInput(r, f, dt, tokens*heads, dim)
				xv := nanPadded(t, e, dt, x, tokens, heads, dim, pad)
				want, err = quant.Quantize(f, x, tokens, heads, dim)
				require.NoError(t, err)
				got, err = e.Quantize(ctx, f, xv)
				require.NoError(t, err)
				t.Cleanup(got.Close)
				requireSameQuantized(t, want, got)

				// Into codes and scales at offsets of larger tensors.
				groups := tokens * heads * f.Groups(dim)
				cb := newTensor(t, e, memory.F32, 3+len(want.Words))
				sb := newTensor(t, e, memory.BF16, 4+groups+1)
				require.NoError(t, cb.Fill(ctx, conformance.Poison))
				require.NoError(t, sb.Fill(ctx, conformance.Poison))
				out := &attention.Quantized{Format: f,
					Codes:  view(t, cb, []int{tokens, heads, dim / f.PerWord()}, []int{heads * dim / f.PerWord(), dim / f.PerWord(), 1}, 3),
					Scales: view(t, sb, []int{tokens, heads, f.Groups(dim)}, []int{heads * f.Groups(dim), f.Groups(dim), 1}, 4)}
				require.NoError(t, e.QuantizeInto(ctx, out, xv))
				requireSameQuantized(t, want, out)
				cw := download(t, cb)
				require.Equal(t, uint32(conformance.Poison), math.Float32bits(cw[0]), "before the codes")
				sw := download(t, sb)
				require.Equal(t, uint32(conformance.Poison>>16), math.Float32bits(sw[3])>>16, "before the scales")
				require.Equal(t, uint32(conformance.Poison>>16), math.Float32bits(sw[4+groups])>>16, "after the scales")
			})
		}
	}
	// Many groups: more scale words than one workgroup's invocations, every group a kind.
	x := quantizeInput(r, quant.Int4, memory.F32, 333, 256)
	want, err := quant.Quantize(quant.Int4, x, 111, 3, 256)
	require.NoError(t, err)
	got, err := e.Quantize(ctx, quant.Int4, upload(t, e, memory.F32, x, 111, 3, 256))
	require.NoError(t, err)
	t.Cleanup(got.Close)
	requireSameQuantized(t, want, got)
}

// nanPadded uploads x, [tokens][heads][dim], as a strided view: rows of dim + pad elements from
// element pad, every padding element NaN (a kernel that reads it fails the comparison).
func nanPadded(t *testing.T, e *attention.Engine, dt memory.DType, x []float32, tokens, heads, dim, pad int) *memory.Tensor {
	t.Helper()
	base := make([]float32, pad+tokens*heads*(dim+pad))
	for i := range base {
		base[i] = float32(math.NaN())
	}
	for row := range tokens * heads {
		copy(base[pad+row*(dim+pad):], x[row*dim:(row+1)*dim])
	}
	return view(t, upload(t, e, dt, base, len(base)), []int{tokens, heads, dim}, []int{heads * (dim + pad), dim + pad, 1}, pad)
}

// TestQuantizeThenDecodeQuantized: DecodeQuantized over K and V (and FP8 queries) that Quantize
// made equals DecodeQuantized over UploadQuantized of quant.Quantize's, bit for bit.
func TestQuantizeThenDecodeQuantized(t *testing.T) {
	e := engine(t)
	ctx := context.Background()
	r := replayedRand(t, 0x9a13)
	const lk, hq, hk = 37, 4, 2
	for _, kv := range []quant.Format{quant.Int8, quant.Int4} {
		for _, d := range []int{64, 256} {
			t.Run(fmt.Sprintf("%v/d%d", kv, d), func(t *testing.T) {
				qf, kf, vf := normals(r, hq*d), normals(r, lk*hk*d), normals(r, lk*hk*d)
				kf[r.IntN(len(kf))] = float32(math.NaN()) // one group of K dequantizes to NaN
				qShape, kShape := []int{1, 1, hq, d}, []int{1, lk, hk, d}
				onDevice := func(f quant.Format, x []float32, shape []int) *attention.Quantized {
					got, err := e.Quantize(ctx, f, upload(t, e, memory.F32, x, shape...))
					require.NoError(t, err)
					t.Cleanup(got.Close)
					return got
				}
				onHost := func(f quant.Format, x []float32, shape []int) *attention.Quantized {
					n := len(shape)
					h, err := quant.Quantize(f, x, len(x)/(shape[n-2]*shape[n-1]), shape[n-2], shape[n-1])
					require.NoError(t, err)
					return uploadQuantized(t, e, h, shape)
				}
				q := upload(t, e, memory.F32, qf, qShape...)
				for _, fp8 := range []bool{false, true} {
					var outs [2][]float32
					for i, mk := range []func(quant.Format, []float32, []int) *attention.Quantized{onDevice, onHost} {
						opts := attention.QuantizedDecodeOptions{}
						qq := q
						if fp8 {
							opts.FP8Queries, qq = mk(quant.E4M3, qf, qShape), nil
						}
						res, err := e.DecodeQuantized(ctx, qq, mk(kv, kf, kShape), mk(kv, vf, kShape), opts)
						require.NoError(t, err)
						outs[i] = download(t, res.O)
						res.Close()
					}
					for i := range outs[0] {
						if math.Float32bits(outs[0][i]) != math.Float32bits(outs[1][i]) {
							t.Fatalf("fp8 queries %v: element %d: %v from Quantize, %v from UploadQuantized", fp8, i, outs[0][i], outs[1][i])
						}
					}
				}
			})
		}
	}
}

// TestQuantizeBadInputs: Quantize and QuantizeInto refuse malformed calls with an error naming
// the argument, write nothing (the poisoned outputs stay so) and leak nothing; a closed engine
// refuses both.
func TestQuantizeBadInputs(t *testing.T) {
	e := engine(t)
	ctx := context.Background()
	x := newTensor(t, e, memory.F32, 3, 2, 64)
	x16 := newTensor(t, e, memory.F16, 3, 2, 64)
	big := newTensor(t, e, memory.F32, 3*2*128)
	closed := newTensor(t, e, memory.F32, 3, 2, 64)
	closed.Close()
	e2 := secondEngine(t)
	foreign, err := e2.NewTensor(memory.F32, 3, 2, 64)
	require.NoError(t, err)
	t.Cleanup(foreign.Close)
	before := liveStats(e)
	for _, c := range []struct {
		name string
		f    quant.Format
		x    *memory.Tensor
		want string
	}{
		{"nil", quant.Int8, nil, "x is nil"},
		{"format", quant.Format(9), x, "unknown format 9"},
		{"rank2", quant.Int8, view(t, x, []int{6, 64}, []int{64, 1}, 0), "x has shape [6 64]"},
		{"rank5", quant.Int8, view(t, x, []int{1, 1, 3, 2, 64}, []int{384, 384, 128, 64, 1}, 0), "x has shape [1 1 3 2 64]"},
		{"dim", quant.Int4, view(t, x, []int{3, 2, 60}, []int{128, 64, 1}, 0), "x: quant: int4 needs a head dim that is a positive multiple of 8, got 60"},
		{"strided dim", quant.Int8, view(t, big, []int{3, 2, 64}, []int{256, 128, 2}, 0), "x: the head dim must be contiguous"},
		{"odd offset", quant.Int8, view(t, x16, []int{3, 2, 32}, []int{128, 64, 1}, 1), "x: 16-bit tensors need even offsets"},
		{"batch stride", quant.Int8, view(t, big, []int{2, 1, 2, 64}, []int{384, 128, 64, 1}, 0), "x: batch stride 384 must equal"},
		{"closed", quant.Int8, closed, "x: " + memory.ErrClosed.Error()},
		{"foreign", quant.Int8, foreign, "x: " + memory.ErrForeign.Error()},
	} {
		t.Run(c.name, func(t *testing.T) {
			got, err := e.Quantize(ctx, c.f, c.x)
			require.Nil(t, got)
			require.ErrorContains(t, err, c.want)
			require.ErrorContains(t, err, "attention: Quantize: ")
		})
	}
	require.Equal(t, before, liveStats(e), "a refused Quantize left something allocated")

	good := poisonedQuantized(t, e, quant.Int4, 3, 2, 64)
	other := poisonedQuantized(t, e, quant.Int8, 3, 2, 64)
	oddScales := newTensor(t, e, memory.BF16, 1+6)
	intoX := view(t, big, []int{3, 2, 64}, []int{128, 64, 1}, 0)
	shared := newTensor(t, e, memory.BF16, 3*2*64)
	before = liveStats(e)
	for _, c := range []struct {
		name string
		out  *attention.Quantized
		x    *memory.Tensor
		want string
	}{
		{"nil out", nil, x, "out is nil"},
		{"nil codes", &attention.Quantized{Format: quant.Int4, Scales: good.Scales}, x, "out.Codes is nil"},
		{"codes shape", &attention.Quantized{Format: quant.Int4, Codes: other.Codes, Scales: good.Scales}, x, "out.Codes must be a contiguous f32 tensor of shape [3 2 8]"},
		{"scales type", &attention.Quantized{Format: quant.Int4, Codes: good.Codes, Scales: good.Codes}, x, "out.Scales must be a contiguous bf16 tensor"},
		{"scales offset", &attention.Quantized{Format: quant.Int4, Codes: good.Codes,
			Scales: view(t, oddScales, []int{3, 2, 1}, []int{2, 1, 1}, 1)}, x, "out.Scales must start at an even element"},
		{"scales overlap x", &attention.Quantized{Format: quant.Int4, Codes: good.Codes,
			Scales: view(t, shared, []int{3, 2, 1}, []int{2, 1, 1}, 6)}, view(t, shared, []int{3, 2, 64}, []int{128, 64, 1}, 0), "out.Scales overlaps x"},
		{"codes overlap x", &attention.Quantized{Format: quant.Int4,
			Codes: view(t, big, []int{3, 2, 8}, []int{16, 8, 1}, 0), Scales: good.Scales}, intoX, "out.Codes overlaps x"},
		{"closed codes", &attention.Quantized{Format: quant.Int4, Codes: closed, Scales: good.Scales}, x, "out.Codes: " + memory.ErrClosed.Error()},
		{"format", &attention.Quantized{Format: quant.Format(0), Codes: good.Codes, Scales: good.Scales}, x, "unknown format 0"},
		{"x dim", good, view(t, x, []int{3, 2, 36}, []int{128, 64, 1}, 0), "x: quant: int4 needs a head dim"},
	} {
		t.Run("into/"+c.name, func(t *testing.T) {
			require.ErrorContains(t, e.QuantizeInto(ctx, c.out, c.x), c.want)
		})
	}
	for _, x := range []*memory.Tensor{good.Codes, good.Scales, other.Codes, other.Scales} {
		for i, v := range download(t, x) {
			if x.DType == memory.F32 && math.Float32bits(v) != conformance.Poison ||
				x.DType == memory.BF16 && math.Float32bits(v)>>16 != conformance.Poison&0xffff {
				t.Fatalf("element %d of %v was written: %v: something was dispatched", i, x.Shape, v)
			}
		}
	}
	require.Equal(t, before, liveStats(e), "a refused QuantizeInto left something allocated")

	e2.Close()
	_, err = e2.Quantize(ctx, quant.Int8, foreign)
	require.ErrorIs(t, err, attention.ErrClosed)
	require.ErrorIs(t, e2.QuantizeInto(ctx, good, foreign), attention.ErrClosed)
}
