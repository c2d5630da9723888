package quant

import (
	"math"
	"testing"

	"github.com/stretchr/testify/require"
)

// nearestE4M3 is the E4M3 code nearest to v by search over every finite code, ties to the even
// code, saturating at ±448: the slow definition EncodeE4M3 is checked against.
func nearestE4M3(v float64) uint8 {
	if math.IsNaN(v) {
		if math.Signbit(v) {
			return 0xff
		}
		return 0x7f
	}
	var sign uint8
	if math.Signbit(v) {
		sign, v = 0x80, -v
	}
	best, bestD := uint8(0), math.Inf(1)
	for c := uint8(0); c <= 0x7e; c++ {
		d := math.Abs(float64(DecodeE4M3(c)) - v)
		if d < bestD || (d == bestD && c%2 == 0) {
			best, bestD = c, d
		}
	}
	return sign | best
}

// All 256 codes: decoding gives the E4M3 value by its definition, and encoding the value gives
// the code back (NaN codes included, by sign).
func TestE4M3Exhaustive(t *testing.T) {
	finite := 0
	for c := 0; c < 256; c++ {
		v := DecodeE4M3(uint8(c))
		e, m := c>>3&15, float64(c&7)
		var want float64
		switch {
		case e == 15 && m == 7:
			require.True(t, math.IsNaN(float64(v)), "%#x", c)
			require.Equal(t, c >= 0x80, math.Signbit(float64(v)))
			require.Equal(t, uint8(c), EncodeE4M3(v))
			continue
		case e == 0:
			want = m / 8 * math.Pow(2, -6)
		default:
			want = (1 + m/8) * math.Pow(2, float64(e-7))
		}
		if c >= 0x80 {
			want = -want
		}
		finite++
		require.Equal(t, want, float64(v), "%#x", c)
		require.Equal(t, c >= 0x80, math.Signbit(float64(v)), "%#x sign", c)
		require.Equal(t, uint8(c), EncodeE4M3(v), "%#x", c)
		require.LessOrEqual(t, math.Abs(want), 448.0)
	}
	require.Equal(t, 254, finite)
	require.Equal(t, float32(448), DecodeE4M3(0x7e))
	require.Equal(t, float32(0x1p-9), DecodeE4M3(1))
	require.Equal(t, float32(0x1p-6), DecodeE4M3(8))
}

// Rounding between codes: every midpoint goes to the even code, a value one float32 ulp off a
// midpoint to the nearer one; beyond 448 and infinities saturate; random float32 values agree
// with the search.
func TestE4M3Rounding(t *testing.T) {
	r := newRand(t)
	for c := uint8(0); c < 0x7e; c++ {
		lo, hi := DecodeE4M3(c), DecodeE4M3(c+1)
		mid := (lo + hi) / 2 // exact
		even := c
		if c%2 != 0 {
			even = c + 1
		}
		for _, sign := range []float32{1, -1} {
			s := uint8(0)
			if sign < 0 {
				s = 0x80
			}
			require.Equal(t, s|even, EncodeE4M3(sign*mid), "tie between %v and %v", lo, hi)
			require.Equal(t, s|c, EncodeE4M3(sign*math.Nextafter32(mid, 0)))
			require.Equal(t, s|(c+1), EncodeE4M3(sign*math.Nextafter32(mid, 1000)))
		}
	}
	for _, v := range []float32{448, 463.99, 464, 480, 1e6, math.MaxFloat32, float32(math.Inf(1))} {
		require.Equal(t, uint8(0x7e), EncodeE4M3(v), "%v", v)
		require.Equal(t, uint8(0xfe), EncodeE4M3(-v), "%v", -v)
	}
	require.Equal(t, uint8(0x80), EncodeE4M3(float32(math.Copysign(0, -1))))
	require.Equal(t, uint8(0), EncodeE4M3(0x1p-11), "a quarter of the smallest subnormal")
	require.Equal(t, uint8(0), EncodeE4M3(0x1p-10), "half of it: a tie, to even 0")
	require.Equal(t, uint8(1), EncodeE4M3(math.Nextafter32(0x1p-10, 1)))
	require.Equal(t, uint8(0x7f), EncodeE4M3(float32(math.NaN())))
	for i := 0; i < 200000; i++ {
		v := math.Float32frombits(r.Uint32())
		if i%2 == 0 { // mostly within E4M3's range
			v = float32(r.NormFloat64() * math.Exp2(float64(r.IntN(24)-12)))
		}
		require.Equal(t, nearestE4M3(float64(v)), EncodeE4M3(v), "%v (%#x)", v, math.Float32bits(v))
	}
}
