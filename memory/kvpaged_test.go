package memory

import (
	"context"
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/stretchr/testify/require"
	"github.com/vkattn/vkattn/vk"
)

// TestKVCachePaged runs the layout-independent KV cache tests on the paged layout
// (KVCacheConfig.Paged): growth, the commit bound and Stats, release and reuse down to Trim
// (validation at cleanup finds nothing alive), the page budget, device appends, batches and
// concurrent appends.
func TestKVCachePaged(t *testing.T) {
	testPaged = true
	defer func() { testPaged = false }()
	for name, f := range map[string]func(*testing.T){
		"GrowTokenByToken":   TestKVCacheGrowTokenByToken,
		"ReleaseReuse":       TestKVCacheReleaseReuse,
		"OutOfMemory":        TestKVCacheOutOfMemory,
		"AppendTensors":      TestKVCacheAppendTensors,
		"AppendTensorsBatch": TestKVCacheAppendTensorsBatch,
		"ConcurrentAppends":  TestKVCacheConcurrentAppends,
	} {
		t.Run(name, f)
	}
}

// TestKVCacheWithoutSparseResidency: on a device without sparse residency the cache is paged.
func TestKVCacheWithoutSparseResidency(t *testing.T) {
	a := newTestAllocator(t)
	saved := sparseResidency
	defer func() { sparseResidency = saved }()
	sparseResidency = func(*vk.Device) error {
		return fmt.Errorf("vk: test device lacks the sparseResidencyBuffer feature: %w", vk.ErrFeatureMissing)
	}
	c, err := NewKVCache(a, KVCacheConfig{Sequences: 1, MaxLen: 40, Heads: 1, HeadDim: 8, DType: F32})
	require.NoError(t, err)
	defer c.Close()
	require.True(t, c.Paged())
	require.Equal(t, DefaultPageTokens, c.Config().PageTokens)
	require.Equal(t, uint64(DefaultPageTokens*8*4), c.PageSize())
	kv := make([]float32, 20*8)
	require.NoError(t, c.Append(context.Background(), 0, kv, kv))
	require.Equal(t, []int{4}, c.Stats().SeqPages, "two pages each of K and V")
}

// TestKVCachePagedViews: a paged sequence's views carry its block table, cover the tokens it
// held when made, refuse views, reshapes and transfers, close on Release; Batch is one group
// whose table joins the sequences' tables, each sequence starting on a page of it.
func TestKVCachePagedViews(t *testing.T) {
	a := newTestAllocator(t)
	c, err := NewKVCache(a, KVCacheConfig{Sequences: 3, MaxLen: 100, Heads: 2, HeadDim: 8, DType: F16, Paged: true, PageTokens: 4, ChunkPages: 2})
	require.NoError(t, err)
	defer c.Close()
	ctx := context.Background()
	r := rand.New(rand.NewPCG(21, 22))
	per := 2 * 8
	// Interleaved appends, so the sequences' pages interleave in the pool.
	for _, step := range []struct{ seq, n int }{{0, 3}, {1, 5}, {0, 6}, {2, 1}, {1, 4}, {0, 2}} {
		require.NoError(t, c.Append(ctx, step.seq, randomValues(r, step.n*per), randomValues(r, step.n*per)))
	}
	k, v, err := c.View(0)
	require.NoError(t, err)
	pt, pages := k.Pages()
	require.Equal(t, 4, pt)
	require.Len(t, pages, 3, "11 tokens in pages of 4")
	_, vp := v.Pages()
	require.Equal(t, pages, vp)
	require.Equal(t, []int{1, 11, 2, 8}, k.Shape)
	require.Equal(t, c.seqs[0].pages[:3], pages)
	_, err = k.Reshape(11, 2, 8)
	require.ErrorContains(t, err, "paged")
	_, err = k.Download(ctx)
	require.ErrorContains(t, err, "paged")
	require.ErrorContains(t, c.AppendTensors(ctx, 1, k, v), "paged")

	groups, err := c.Batch([]int{2, 0, 1})
	require.NoError(t, err)
	require.Len(t, groups, 1)
	g := groups[0]
	require.Equal(t, []int{0, 1, 2}, g.Index)
	require.Equal(t, []int{1, 11, 9}, g.Lens)
	require.Equal(t, []int{0, 4, 16}, g.Starts, "pages 1, 3 and 3 of the sequences")
	_, table := g.K.Pages()
	want := append(append(append([]uint32(nil), c.seqs[2].pages[:1]...), c.seqs[0].pages[:3]...), c.seqs[1].pages[:3]...)
	require.Equal(t, want, table)
	require.Equal(t, []int{25, 2, 8}, g.K.Shape)
	require.Same(t, k.Buffer(), g.K.Buffer())

	require.NoError(t, c.Release(0))
	require.True(t, k.Closed())
	require.True(t, v.Closed())
}

// TestKVCachePagedMove: growing past the pool's buffers moves the pages into larger ones; the
// views made before read the old buffers until Trim, after which they report Closed, and the
// data is intact in the new ones.
func TestKVCachePagedMove(t *testing.T) {
	a := newTestAllocator(t)
	c, err := NewKVCache(a, KVCacheConfig{Sequences: 2, MaxLen: 200, Heads: 1, HeadDim: 16, DType: F32, Paged: true, PageTokens: 8, ChunkPages: 1})
	require.NoError(t, err)
	defer c.Close()
	ctx := context.Background()
	r := rand.New(rand.NewPCG(23, 24))
	wantK, wantV := make([][]float32, 2), make([][]float32, 2)
	add := func(s, n int) {
		k, v := randomValues(r, n*16), randomValues(r, n*16)
		require.NoError(t, c.Append(ctx, s, k, v))
		wantK[s], wantV[s] = append(wantK[s], k...), append(wantV[s], v...)
	}
	add(0, 8)
	before, _, err := c.View(0)
	require.NoError(t, err)
	add(1, 40)
	add(0, 30)
	require.NotSame(t, before.Buffer(), c.paged.k, "the pages moved")
	require.Positive(t, retiredBytes(c))
	require.False(t, before.Closed())
	checkSequences(t, c, wantK, wantV)
	checkCommitted(t, c)
	c.Trim()
	require.Zero(t, retiredBytes(c))
	require.True(t, before.Closed(), "its buffer is gone")
	checkSequences(t, c, wantK, wantV)
	checkCommitted(t, c)
	st := c.Stats()
	require.Equal(t, 2, st.Allocations)
	require.Zero(t, st.BindBatches)
	require.Zero(t, st.BindSubmitTime)
	require.Positive(t, st.AllocateTime, "the buffers' memory was allocated")
}

// TestKVCachePagedLimit: the pool's buffers, which kernels bind whole and which have an
// allocation each, stop at the smaller of maxStorageBufferRange and maxMemoryAllocationSize;
// past it growing fails with vk.ErrOutOfDeviceMemory naming that limit, and the cache stays
// usable.
func TestKVCachePagedLimit(t *testing.T) {
	a := newTestAllocator(t)
	info := a.Device().Info()
	limit, limitName := int(info.MaxStorageBufferRange), "maxStorageBufferRange"
	if m := int(info.MaxMemoryAllocationSize); m > 0 && m < limit {
		limit, limitName = m, "maxMemoryAllocationSize"
	}
	tb := 64 * 128 * 4           // 32 KiB a token
	maxLen := limit / tb / 2 * 2 // even: two pages of maxLen/2 tokens fit the range
	c, err := NewKVCache(a, KVCacheConfig{Sequences: 2, MaxLen: maxLen, Heads: 64, HeadDim: 128, DType: F32, Paged: true, PageTokens: maxLen / 2})
	require.NoError(t, err)
	defer c.Close()
	require.NoError(t, c.Reserve(0, maxLen))
	err = c.Reserve(1, 1)
	require.ErrorIs(t, err, vk.ErrOutOfDeviceMemory)
	require.ErrorContains(t, err, limitName)
	require.NoError(t, c.Release(0))
	require.NoError(t, c.Reserve(1, 1))
}
