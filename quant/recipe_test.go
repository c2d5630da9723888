package quant

import (
	"math"
	"math/rand/v2"
	"testing"

	"github.com/stretchr/testify/require"
)

// The package documentation tells kernels how to find the nearest code without an exact
// division. These are those recipes in float32, checked against Quantize's definition with a
// quotient off by up to 3 ulps (Vulkan allows 2.5).

// sloppyQuotient is x/s as a GPU may compute it: a reciprocal and a product, then moved by up to
// ulps float32 ulps.
func sloppyQuotient(r *rand.Rand, x, s float32, ulps int) float32 {
	t := x * float32(1/s)
	for k := r.IntN(2*ulps+1) - ulps; k != 0; {
		if k > 0 {
			t, k = math.Nextafter32(t, float32(math.Inf(1))), k-1
		} else {
			t, k = math.Nextafter32(t, float32(math.Inf(-1))), k+1
		}
	}
	return t
}

// intRecipe is the documented integer recipe, t the kernel's quotient x/s. For Int4's negative
// scales it runs on -x and -s (the same quotient).
func intRecipe(f Format, x, s, t float32) uint8 {
	if s < 0 {
		x, s = -x, -s
	}
	n := float32(math.RoundToEven(float64(t)))
	lo, hi := float32((n-0.5)*s), float32((n+0.5)*s) // exact
	odd := int(n)&1 != 0
	if x > hi || (x == hi && odd) {
		n++
	} else if x < lo || (x == lo && odd) {
		n--
	}
	cmin, cmax := float32(-127), float32(127)
	if f == Int4 {
		cmin, cmax = -8, 7
	}
	n = max(cmin, min(cmax, n))
	return uint8(int8(n)) & uint8(1<<f.Bits()-1)
}

// e4m3Recipe is the documented E4M3 recipe on magnitudes, t the kernel's quotient.
func e4m3Recipe(x, s, t float32) uint8 {
	var sign uint8
	a := x
	if math.Signbit(float64(x)) {
		sign, a, t = 0x80, -x, -t
	}
	c := EncodeE4M3(t) & 0x7f
	v := DecodeE4M3(c)
	if c < 0x7e {
		mid := float32((v + DecodeE4M3(c+1)) / 2 * s) // exact
		if a > mid || (a == mid && c%2 == 1) {
			return sign | (c + 1)
		}
	}
	if c > 0 {
		mid := float32((v + DecodeE4M3(c-1)) / 2 * s)
		if a < mid || (a == mid && c%2 == 1) {
			return sign | (c - 1)
		}
	}
	return sign | c
}

func TestKernelRecipes(t *testing.T) {
	r := newRand(t)
	for _, f := range formats {
		boundaries := []float32{} // rounding boundaries of the format, in units of the scale
		if f == E4M3 {
			for c := uint8(0); c < 0x7e; c++ {
				m := (DecodeE4M3(c) + DecodeE4M3(c+1)) / 2
				boundaries = append(boundaries, m, -m)
			}
		} else {
			for n := -f.Max() - 1; n <= f.Max(); n++ {
				boundaries = append(boundaries, n+0.5)
			}
		}
		sign := float32(1)
		for i := 0; i < 100000; i++ {
			absmax := float32(math.Exp2(float64(r.IntN(120) - 60)))
			absmax *= 1 + r.Float32()
			s := BF16Value(f.ScaleBits(absmax))
			if f == Int4 { // either sign
				s *= sign
				sign = -sign
			}
			var x float32
			switch i % 3 {
			case 0: // uniform in the group's range
				x = absmax * (2*r.Float32() - 1)
			case 1: // exactly on a boundary
				x = boundaries[r.IntN(len(boundaries))] * s
			default: // next to one
				x = boundaries[r.IntN(len(boundaries))] * s
				x = math.Nextafter32(x, float32(math.Inf(2*r.IntN(2)-1)))
			}
			if math.Abs(float64(x)) > float64(absmax) {
				continue
			}
			want := f.field(x, s)
			tq := sloppyQuotient(r, x, s, 3)
			var got uint8
			if f == E4M3 {
				got = e4m3Recipe(x, s, tq)
			} else {
				got = intRecipe(f, x, s, tq)
			}
			require.Equal(t, want, got, "%v x=%v (%#x) s=%v t=%v", f, x, math.Float32bits(x), s, tq)
		}
	}
}
