package quant

import (
	"math"
	"testing"

	"github.com/stretchr/testify/require"
)

// The constants a kernel needs, as the package documentation gives them.
func TestConstants(t *testing.T) {
	require.Equal(t, uint32(0x3c010204), math.Float32bits(inv127))
	require.Equal(t, uint32(0x3e000000), math.Float32bits(inv8))
	require.Equal(t, uint32(0x3b124925), math.Float32bits(inv448))
	require.Equal(t, uint16(0x7fc0), BF16Bits(float32(math.NaN())))
	require.True(t, math.IsNaN(float64(BF16Value(NaNScale))))
}

func TestGroups(t *testing.T) {
	for _, d := range headDims {
		for _, f := range formats {
			require.NoError(t, f.Check(d), "%v d=%d", f, d)
			want := d
			if f == Int4 && d%128 == 0 {
				want = 128
			}
			require.Equal(t, want, f.GroupSize(d), "%v d=%d", f, d)
			require.Equal(t, d/want, f.Groups(d))
		}
	}
	require.Error(t, Int4.Check(36))
	require.NoError(t, Int8.Check(36))
	require.Error(t, Int8.Check(0))
	require.Error(t, Format(0).Check(64))
	require.Equal(t, "int4", Int4.String())
}

// Every field value of each format, decoded.
func TestValue(t *testing.T) {
	for f := uint8(0); f < 16; f++ {
		want := float32(f)
		if f >= 8 {
			want -= 16
		}
		require.Equal(t, want, Int4.Value(f))
	}
	for f := 0; f < 256; f++ {
		require.Equal(t, float32(int8(uint8(f))), Int8.Value(uint8(f)))
		require.Equal(t, math.Float32bits(DecodeE4M3(uint8(f))), math.Float32bits(E4M3.Value(uint8(f))))
	}
}

func TestBF16(t *testing.T) {
	cases := []struct {
		x    float32
		want uint16
	}{
		{1, 0x3f80},
		{-2, 0xc000},
		{math.Float32frombits(0x3f808000), 0x3f80}, // tie, down to even
		{math.Float32frombits(0x3f818000), 0x3f82}, // tie, up to even
		{math.Float32frombits(0x3f808001), 0x3f81},
		{float32(math.Inf(1)), 0x7f80},
		{math.MaxFloat32, 0x7f80}, // rounds up to Inf
	}
	for _, c := range cases {
		require.Equal(t, c.want, BF16Bits(c.x), "%v", c.x)
	}
	for b := 0; b < 1<<16; b++ {
		v := BF16Value(uint16(b))
		if v == v {
			require.Equal(t, uint16(b), BF16Bits(v), "%#x", b)
		}
	}
}

func TestScaleBits(t *testing.T) {
	require.Equal(t, BF16Bits(1), Int8.ScaleBits(127))
	require.Equal(t, BF16Bits(1), Int4.ScaleBits(8))
	require.Equal(t, BF16Bits(1), E4M3.ScaleBits(448))
	for _, f := range formats {
		require.Equal(t, uint16(0), f.ScaleBits(0))
		require.Equal(t, uint16(0), f.ScaleBits(1e-31), "below MinScale")
		require.NotZero(t, f.ScaleBits(1e-25))
		require.Equal(t, NaNScale, f.ScaleBits(float32(math.NaN())))
		require.Equal(t, NaNScale, f.ScaleBits(float32(math.Inf(1))))
		// absmax maps to Max within bf16's relative rounding error of 2^-8 (less than half a
		// step for Int8), so clamping moves no element by more than half a step.
		for _, a := range []float32{1e-25, 0.3, 1, 7, 127, 1000, 3e38, 3.38e38} {
			q := float64(a) / float64(BF16Value(f.ScaleBits(a)))
			require.InDelta(t, float64(f.Max()), q, float64(f.Max())*0x1p-8*1.004, "%v absmax %v", f, a)
		}
	}
}

// Int4's scale is negative exactly when +absmax is in the group; 0 and NaN scales keep no sign;
// the other formats' scales are ScaleBits(absmax).
func TestGroupScale(t *testing.T) {
	cases := []struct {
		x    []float32
		want uint16
	}{
		{[]float32{3, -1, 0, 2}, BF16Bits(-3.0 / 8)},
		{[]float32{-3, 1, 0, 2}, BF16Bits(3.0 / 8)},
		{[]float32{-3, 3, 0, 2}, BF16Bits(-3.0 / 8)},
		{[]float32{0, 0, float32(math.Copysign(0, -1)), 0}, 0},
		{[]float32{1e-35, 0, 0, 0}, 0},
		{[]float32{1, float32(math.Inf(1)), 0, 0}, NaNScale},
		{[]float32{1, float32(math.NaN()), 0, 0}, NaNScale},
	}
	for _, c := range cases {
		require.Equal(t, c.want, Int4.GroupScale(c.x), "%v", c.x)
		require.Equal(t, Int8.ScaleBits(absmax(c.x)), Int8.GroupScale(c.x), "%v", c.x)
	}
}
