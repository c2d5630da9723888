package memory

import (
	"context"
	"errors"
	"math/rand/v2"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"
)

// The staging buffer never exceeds MaxStagingSize nor the device's maxMemoryAllocationSize.
func TestStagingLimit(t *testing.T) {
	a := newTestAllocator(t)
	limit := a.stagingLimit()
	require.LessOrEqual(t, limit, uint64(MaxStagingSize))
	if m := a.dev.Info().MaxMemoryAllocationSize; m > 0 {
		require.LessOrEqual(t, limit, m)
	}
	a.stagingMax = 4096
	require.Equal(t, uint64(4096), a.stagingLimit())
}

// TestChunkedTransfers forces a staging buffer of a few hundred bytes (not a multiple of any
// element size) and round-trips f32, f16 and bf16 tensors many chunks long, whole and through
// contiguous views at odd element offsets with odd lengths, checking that the elements around a
// view are left alone. Both the staged and (where memory is host-visible) the direct paths run.
func TestChunkedTransfers(t *testing.T) {
	a := newTestAllocator(t)
	ctx := context.Background()
	r := rand.New(rand.NewPCG(7, 8))
	const chunk = 1030 // bytes: splits f32 and 16-bit elements alike across chunks
	a.stagingMax = chunk
	for _, stage := range []bool{true, false} {
		a.alwaysStage = stage
		for _, dt := range []DType{F32, F16, BF16} {
			for _, n := range []int{chunk/dt.Size() + 1, 2049, 12345} {
				require.Greater(t, n*dt.Size(), chunk, "more than one chunk")
				x, err := a.NewTensor(dt, n)
				require.NoError(t, err)
				whole := testValues(r, dt, n)
				require.NoError(t, x.Upload(ctx, whole))
				got, err := x.Download(ctx)
				require.NoError(t, err)
				requireSameBits(t, dt, whole, got)

				for _, off := range []int{1, 3, 7, 501} {
					length := n - off - 2
					if length < n/2 {
						continue
					}
					if length%2 == 0 {
						length--
					}
					// 16-bit views at odd offsets start mid-word: copies are bytewise, so they
					// work all the same.
					v, err := x.View([]int{length}, []int{1}, off)
					require.NoError(t, err)
					part := testValues(r, dt, length)
					r.Shuffle(len(part), func(i, j int) { part[i], part[j] = part[j], part[i] })
					require.NoError(t, v.Upload(ctx, part))
					got, err := v.Download(ctx)
					require.NoError(t, err)
					requireSameBits(t, dt, part, got)
					copy(whole[off:], part)
					got, err = x.Download(ctx)
					require.NoError(t, err)
					requireSameBits(t, dt, whole, got) // the elements around the view are untouched
				}
				x.Close()
			}
		}
		st := a.Stats()
		if stage {
			require.NotZero(t, st.StagingBytes)
		}
		require.LessOrEqual(t, st.StagingBytes, uint64(2*chunk), "the staging buffer stays at the limit")
	}
	// Back to the default limit: the staging buffer is replaced by a larger one and still works.
	a.stagingMax = 0
	a.alwaysStage = true
	x, err := a.NewTensor(F32, 3001)
	require.NoError(t, err)
	data := testValues(r, F32, 3001)
	require.NoError(t, x.Upload(ctx, data))
	got, err := x.Download(ctx)
	require.NoError(t, err)
	requireSameBits(t, F32, data, got)
	require.Greater(t, a.Stats().StagingBytes, uint64(chunk))
	x.Close()
}

// TestTransfersRaceClose closes tensors, and then the allocator, while other goroutines
// transfer to and from them, directly and through chunked staging: every transfer either
// completes or fails with ErrClosed, and nothing touches released memory (run with -race).
func TestTransfersRaceClose(t *testing.T) {
	for _, stage := range []bool{false, true} {
		a := newTestAllocator(t)
		a.alwaysStage = stage
		a.stagingMax = 4096
		ctx := context.Background()
		const n = 20000
		var xs []*Tensor
		for i := 0; i < 6; i++ {
			x, err := a.NewTensor(F32, n)
			require.NoError(t, err)
			xs = append(xs, x)
		}
		var wg sync.WaitGroup
		errs := make(chan error, len(xs))
		for g, x := range xs {
			wg.Add(1)
			go func() {
				defer wg.Done()
				data := make([]float32, n)
				for i := range data {
					data[i] = float32(g)
				}
				for i := 0; i < 40; i++ {
					err := x.Upload(ctx, data)
					if err == nil {
						_, err = x.Download(ctx)
					}
					if errors.Is(err, ErrClosed) {
						return
					}
					if err != nil {
						errs <- err
						return
					}
				}
			}()
		}
		xs[0].Close()
		xs[1].Close()
		a.Close()
		wg.Wait()
		close(errs)
		for err := range errs {
			require.NoError(t, err)
		}
		for _, x := range xs {
			require.True(t, x.Closed())
			require.ErrorIs(t, x.Upload(ctx, make([]float32, n)), ErrClosed)
		}
	}
}
