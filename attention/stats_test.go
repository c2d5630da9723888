package attention_test

import (
	"context"
	"testing"

	"github.com/stretchr/testify/require"
	"github.com/vkattn/vkattn/attention"
	"github.com/vkattn/vkattn/internal/testenv"
	"github.com/vkattn/vkattn/memory"
	"github.com/vkattn/vkattn/vk"
)

// KernelStatistics reports each compiled kernel with the driver's statistics where the device
// offers them, says so where it does not, and fails on a closed engine.
func TestKernelStatistics(t *testing.T) {
	e, err := attention.New(attention.Config{Validation: testenv.Validation(), PipelineCacheDir: "-", PipelineStatistics: true})
	if err != nil {
		testenv.NoDevice(t, err)
	}
	ks, err := e.KernelStatistics()
	require.NoError(t, err)
	require.Empty(t, ks, "nothing compiled yet")

	ctx := context.Background()
	q, err := e.Upload(ctx, memory.F32, make([]float32, 3*2*32), 1, 3, 2, 32)
	require.NoError(t, err)
	defer q.Close()
	res, err := e.Forward(ctx, q, q, q, attention.Options{})
	require.NoError(t, err)
	res.Close()

	ks, err = e.KernelStatistics()
	if info := e.Profile(); info.Features.PipelineExecutableInfo {
		require.NoError(t, err)
		require.Len(t, ks, 1)
		require.Equal(t, res.Kernel, ks[0].Kernel)
		require.NotEmpty(t, ks[0].Executables)
	} else {
		require.ErrorContains(t, err, vk.ExtPipelineExecutableProperties)
	}
	testenv.CheckValidation(t, e.Instance())
	e.Close()
	_, err = e.KernelStatistics()
	require.ErrorIs(t, err, attention.ErrClosed)
}
