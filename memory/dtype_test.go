package memory

import (
	"math"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestFloat16RoundTrip(t *testing.T) {
	// Every finite half converts to float32 and back to itself.
	for h := 0; h < 1<<16; h++ {
		f := Float16From(uint16(h))
		if math.IsNaN(float64(f)) {
			require.True(t, math.IsNaN(float64(Float16From(Float16Bits(f)))))
			continue
		}
		require.Equal(t, uint16(h), Float16Bits(f), "half %#04x -> %v", h, f)
	}
}

func TestFloat16Rounding(t *testing.T) {
	require.Equal(t, uint16(0x3c00), Float16Bits(1))
	require.Equal(t, uint16(0x3c00), Float16Bits(1+1.0/4096))                  // below half an ulp: down
	require.Equal(t, uint16(0x3c00), Float16Bits(1+1.0/2048))                  // tie to even: down
	require.Equal(t, uint16(0x3c02), Float16Bits(1+3.0/2048))                  // tie to even: up
	require.Equal(t, uint16(0x7c00), Float16Bits(70000))                       // overflow to Inf
	require.Equal(t, uint16(0x0001), Float16Bits(float32(math.Ldexp(1, -24)))) // smallest subnormal
	require.Equal(t, uint16(0x0000), Float16Bits(float32(math.Ldexp(1, -26))))
	require.Equal(t, float32(-2), Float16From(Float16Bits(-2)))
}

func TestBFloat16(t *testing.T) {
	require.Equal(t, uint16(0x3f80), BFloat16Bits(1))
	require.Equal(t, uint16(0x3f80), BFloat16Bits(math.Float32frombits(0x3f808000))) // tie to even: down
	require.Equal(t, uint16(0x3f82), BFloat16Bits(math.Float32frombits(0x3f818000))) // tie to even: up
	require.True(t, math.IsNaN(float64(BFloat16From(BFloat16Bits(float32(math.NaN()))))))
	require.Equal(t, float32(math.Inf(-1)), BFloat16From(BFloat16Bits(float32(math.Inf(-1)))))
	for _, x := range []float32{0.1, -3.7, 1e30, 1e-30} {
		require.InEpsilon(t, x, BF16.Round(x), 1.0/128)
	}
}
