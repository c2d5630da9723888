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

// Quantize's scales and codes follow the definition; |x - x'| <= scale/2 for the integer
// formats; re-quantizing a dequantized tensor gives it back bit for bit.
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
				require.Equal(t, f.ScaleBits(absmax(xs)), q.Scales[g])
				s := BF16Value(q.Scales[g])
				for i, v := range xs {
					field := uint8(q.Words[(g*gs+i)/f.PerWord()]>>(f.Bits()*((g*gs+i)%f.PerWord()))) & uint8(1<<f.Bits()-1)
					require.Equal(t, math.Float32bits(f.Value(field)*s), math.Float32bits(ys[i]))
					require.Equal(t, float64(f.Value(field))*float64(s), float64(ys[i]), "exact product")
					if f == E4M3 {
						require.Equal(t, nearestE4M3(float64(v)/float64(s)), field, "%v / %v", v, s)
						continue
					}
					require.LessOrEqual(t, math.Abs(float64(v)-float64(ys[i])), float64(s)/2, "%v d=%d x=%v s=%v", f, d, v, s)
					if f == Int4 {
						require.NotEqual(t, float32(-8), f.Value(field), "int4 never produces -8")
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

// Exact ties round to the even code; values just off a tie round to the nearer one.
func TestQuantizeTies(t *testing.T) {
	for _, f := range []Format{Int8, Int4} {
		max := f.Max()
		s := BF16Value(f.ScaleBits(max)) // 1
		require.Equal(t, float32(1), s)
		for n := -max; n < max; n++ {
			mid := n + 0.5
			x := []float32{max, mid, math.Nextafter32(mid, float32(math.Inf(-1))), math.Nextafter32(mid, float32(math.Inf(1)))}
			d := f.PerWord()
			q, err := Quantize(f, append(x, make([]float32, d-len(x))...), 1, 1, d)
			require.NoError(t, err)
			even := n
			if int(n)%2 != 0 {
				even = n + 1
			}
			require.Equal(t, even, f.Value(q.Field(0, 0, 1)), "%v tie %v", f, mid)
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
		// The largest finite magnitudes quantize to ±Max·scale.
		z[1], z[2] = math.MaxFloat32/2, -math.MaxFloat32/2
		q, err = Quantize(f, z, 1, 1, len(z))
		require.NoError(t, err)
		require.Equal(t, f.Max(), f.Value(q.Field(0, 0, 1)))
		require.Equal(t, -f.Max(), f.Value(q.Field(0, 0, 2)))
		require.Zero(t, f.Value(q.Field(0, 0, 0)))
	}
}
