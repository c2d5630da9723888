package quant

import (
	"encoding/binary"
	"math"
	"testing"

	"github.com/stretchr/testify/require"
)

// Pack and Unpack round-trip bit-exactly: every field value of each format in every position of
// a word, random fields, odd token counts; Pack writes the documented bit positions.
func TestPackUnpack(t *testing.T) {
	r := newRand(t)
	for _, f := range formats {
		for _, d := range headDims {
			for _, tokens := range []int{0, 1, 3, 7, 33} {
				heads := 1 + r.IntN(3)
				n := tokens * heads * d
				fields := make([]uint8, n)
				for i := range fields {
					if tokens == 33 { // every value at every position, in order
						fields[i] = uint8(i % (1 << f.Bits()))
					} else {
						fields[i] = uint8(r.IntN(1 << f.Bits()))
					}
				}
				scales := make([]uint16, tokens*heads*f.Groups(d))
				for i := range scales {
					scales[i] = uint16(r.Uint32())
				}
				p, err := Pack(f, fields, scales, tokens, heads, d)
				require.NoError(t, err)
				require.Len(t, p.Words, n/f.PerWord())
				gotF, gotS := p.Unpack()
				require.Equal(t, fields, gotF, "%v d=%d tokens=%d", f, d, tokens)
				require.Equal(t, scales, gotS)
				again, err := Pack(f, gotF, gotS, tokens, heads, d)
				require.NoError(t, err)
				require.Equal(t, p.Words, again.Words)
				for i := 0; i < n && i < 4*d; i++ { // the documented positions
					w := p.Words[i/f.PerWord()]
					require.Equal(t, fields[i], uint8(w>>(f.Bits()*(i%f.PerWord())))&uint8(1<<f.Bits()-1))
					tok, h, c := i/(heads*d), i/d%heads, i%d
					require.Equal(t, fields[i], p.Field(tok, h, c))
					g := (tok*heads+h)*f.Groups(d) + c/f.GroupSize(d)
					require.Equal(t, math.Float32bits(BF16Value(scales[g])), math.Float32bits(p.Scale(tok, h, c)))
				}
				// The bytes a kernel reads.
				wb, sb := p.WordBytes(), p.ScaleBytes()
				require.Len(t, wb, 4*len(p.Words))
				require.Equal(t, 0, len(sb)%4)
				for i, w := range p.Words {
					require.Equal(t, w, binary.LittleEndian.Uint32(wb[4*i:]))
				}
				for i, s := range scales {
					word := binary.LittleEndian.Uint32(sb[4*(i/2):])
					require.Equal(t, s, uint16(word>>(16*(i%2))))
				}
			}
		}
	}
	_, err := Pack(Int4, []uint8{16, 0, 0, 0, 0, 0, 0, 0}, []uint16{0}, 1, 1, 8)
	require.Error(t, err, "a field wider than 4 bits")
	_, err = Pack(Int8, make([]uint8, 8), []uint16{0, 0}, 1, 1, 8)
	require.Error(t, err, "too many scales")
	_, err = Quantize(Int8, make([]float32, 7), 1, 1, 8)
	require.Error(t, err)
}

// Quantize's scales and codes follow the definition; |x - x'| <= |scale|/2 for the integer
// formats, but for Int4's clamping at 7 (the other sign than the largest magnitude, beyond
// 7.5 steps), where it is at most a step; Int4's largest magnitude gets -8; re-quantizing a
// dequantized tensor gives it back bit for bit.
func TestQuantizeDequantize(t *testing.T) {
	r := newRand(t)
	for _, f := range formats {
		for _, d := range headDims {
			tokens, heads := 1+2*r.IntN(20), 1+r.IntN(4)
			x := gaussian(r, tokens*heads*d, math.Exp(4*r.NormFloat64()))
			for i := 0; i < len(x)/50; i++ { // outliers
				x[r.IntN(len(x))] *= 30
			}
			q, err := Quantize(f, x, tokens, heads, d)
			require.NoError(t, err)
			y := q.Dequantize()
			gs := f.GroupSize(d)
			for g := range q.Scales {
				xs, ys := x[g*gs:(g+1)*gs], y[g*gs:(g+1)*gs]
				require.Equal(t, f.GroupScale(xs), q.Scales[g])
				require.Equal(t, f.ScaleBits(absmax(xs)), q.Scales[g]&0x7fff)
				s := BF16Value(q.Scales[g])
				step := math.Abs(float64(s))
				for i, v := range xs {
					field := uint8(q.Words[(g*gs+i)/f.PerWord()]>>(f.Bits()*((g*gs+i)%f.PerWord()))) & uint8(1<<f.Bits()-1)
					require.Equal(t, math.Float32bits(f.Value(field)*s), math.Float32bits(ys[i]))
					require.Equal(t, float64(f.Value(field))*float64(s), float64(ys[i]), "exact product")
					if f == E4M3 {
						require.Equal(t, nearestE4M3(float64(v)/float64(s)), field, "%v / %v", v, s)
						continue
					}
					bound := step / 2
					if f == Int4 && f.Value(field) == 7 && math.Abs(float64(v)/float64(s)) > 7.5 {
						bound = step * (1 + 8*0x1p-8) // clamped: |x| <= absmax <= 8·(1 + 2^-8) steps
					}
					require.LessOrEqual(t, math.Abs(float64(v)-float64(ys[i])), bound, "%v d=%d x=%v s=%v", f, d, v, s)
					if f == Int4 && math.Abs(float64(v)) == float64(absmax(xs)) && (v > 0) == (s < 0) {
						require.Equal(t, float32(-8), f.Value(field), "the largest magnitude %v, s=%v", v, s)
					}
				}
			}
			again, err := Quantize(f, y, tokens, heads, d)
			require.NoError(t, err)
			require.Equal(t, q.Scales, again.Scales, "%v d=%d", f, d)
			require.Equal(t, q.Words, again.Words, "%v d=%d", f, d)
		}
	}
}

// Exact ties round to the even code; values just off a tie round to the nearer one. Int4's
// groups hold -8 (scale 1) or +8 (scale -1, x/scale = -x).
func TestQuantizeTies(t *testing.T) {
	for _, c := range []struct {
		f    Format
		sign float32 // of the scale
	}{{Int8, 1}, {Int4, 1}, {Int4, -1}} {
		f, max := c.f, c.f.Max()
		lo, hi, first := -max, max, max // the codes; x/scale of the group's largest magnitude
		if f == Int4 {
			lo, hi, first = -8, 7, -8
		}
		for n := lo; n < hi; n++ {
			mid := n + 0.5
			u := []float32{first, mid, math.Nextafter32(mid, float32(math.Inf(-1))), math.Nextafter32(mid, float32(math.Inf(1)))}
			x := make([]float32, f.PerWord())
			for i, v := range u { // x = scale·u
				x[i] = c.sign * v
			}
			q, err := Quantize(f, x, 1, 1, len(x))
			require.NoError(t, err)
			require.Equal(t, c.sign, BF16Value(q.Scales[0]), "%v", x)
			even := n
			if int(n)%2 != 0 {
				even = n + 1
			}
			require.Equal(t, even, f.Value(q.Field(0, 0, 1)), "%v tie %v", f, x[1])
			require.Equal(t, n, f.Value(q.Field(0, 0, 2)))
			require.Equal(t, n+1, f.Value(q.Field(0, 0, 3)))
		}
	}
}

// NaN or an infinity makes its group's scale NaN and the whole group NaN when dequantized; other
// groups, heads and tokens are untouched. All-zero and tiny groups give scale 0 and zeros.
func TestNonFiniteAndEdgeGroups(t *testing.T) {
	r := newRand(t)
	for _, f := range formats {
		const tokens, heads, d = 3, 2, 256 // Int4: 2 groups per row
		x := gaussian(r, tokens*heads*d, 1)
		clean, err := Quantize(f, x, tokens, heads, d)
		require.NoError(t, err)
		for _, bad := range []float32{float32(math.NaN()), float32(math.Inf(1)), float32(math.Inf(-1))} {
			y := append([]float32(nil), x...)
			at := (1*heads+1)*d + 130 // token 1, head 1, channel 130 (Int4 group 1)
			y[at] = bad
			q, err := Quantize(f, y, tokens, heads, d)
			require.NoError(t, err)
			deq, want := q.Dequantize(), clean.Dequantize()
			gs := f.GroupSize(d)
			g0 := at / gs * gs
			for i := range deq {
				if i >= g0 && i < g0+gs {
					require.True(t, math.IsNaN(float64(deq[i])), "%v: %v poisons its group, element %d", f, bad, i)
				} else {
					require.Equal(t, math.Float32bits(want[i]), math.Float32bits(deq[i]), "%v: %v leaked to element %d", f, bad, i)
				}
			}
			require.Equal(t, NaNScale, q.Scales[at/gs])
		}
		// Zeros, values below MinScale, and -0.
		z := make([]float32, 2*f.PerWord())
		z[0], z[3] = 1e-35, float32(math.Copysign(0, -1))
		q, err := Quantize(f, z, 1, 1, len(z))
		require.NoError(t, err)
		require.Equal(t, []uint16{0}, q.Scales)
		for _, w := range q.Words {
			require.Zero(t, w)
		}
		for _, v := range q.Dequantize() {
			require.Equal(t, uint32(0), math.Float32bits(v))
		}
		// The largest finite magnitudes quantize to ±Max·scale (Int4: +absmax to -8 of a negative
		// scale, -absmax to 7, clamped).
		z[1], z[2] = math.MaxFloat32/2, -math.MaxFloat32/2
		q, err = Quantize(f, z, 1, 1, len(z))
		require.NoError(t, err)
		if f == Int4 {
			require.Equal(t, float32(-8), f.Value(q.Field(0, 0, 1)))
			require.Equal(t, float32(7), f.Value(q.Field(0, 0, 2)))
			require.Less(t, q.Scale(0, 0, 0), float32(0))
		} else {
			require.Equal(t, f.Max(), f.Value(q.Field(0, 0, 1)))
			require.Equal(t, -f.Max(), f.Value(q.Field(0, 0, 2)))
		}
		require.Zero(t, f.Value(q.Field(0, 0, 0)))
		y := q.Dequantize()
		require.InEpsilon(t, math.MaxFloat32/2, y[1], 0x1p-8)
		require.Less(t, y[2], float32(0))
	}
}
