package memory

import (
	"context"
	"math/rand/v2"
	"testing"

	"github.com/stretchr/testify/require"
	"github.com/vkattn/vkattn/vk"
)

// TestKVCacheAppendTensorsBatch appends to several sequences in one call, repeatedly: the
// sequences hold what was appended, as with one call per sequence, and each call submits at most
// one batch of binds; a batch naming a sequence
// twice, or one that runs out of pages, changes no sequence and leaves the cache usable.
func TestKVCacheAppendTensorsBatch(t *testing.T) {
	a := newTestAllocator(t)
	// Heads*HeadDim*4 = 192 bytes a token: regions start on a page and on a token. 40 pages hold
	// 20 of K and V; a sequence holds 22, so that 21 pages more than it holds fit its MaxLen and
	// only the budget refuses them.
	c := newTestCache(t, a, withPages(t, a, KVCacheConfig{Sequences: 4, MaxLen: 1000, Heads: 3, HeadDim: 16, DType: F32, Headroom: 5, MaxPages: 40}, 22))
	tokensPerPage := int(c.page / c.tokenBytes)
	ctx := context.Background()
	r := rand.New(rand.NewPCG(13, 14))
	per := 3 * 16
	wantK, wantV := make([][]float32, 4), make([][]float32, 4)
	tensors := func(n int) (kt, vt *Tensor, k, v []float32) {
		k, v = randomValues(r, n*per), randomValues(r, n*per)
		kt, err := a.NewTensor(F32, n, 3, 16)
		require.NoError(t, err)
		vt, err = a.NewTensor(F32, n, 3, 16)
		require.NoError(t, err)
		require.NoError(t, kt.Upload(ctx, k))
		require.NoError(t, vt.Upload(ctx, v))
		t.Cleanup(kt.Close)
		t.Cleanup(vt.Close)
		return kt, vt, k, v
	}
	for round := range 6 {
		var batch []TensorAppend
		var ks, vs [][]float32
		for _, s := range []int{3, 0, 2} {
			kt, vt, k, v := tensors(1 + r.IntN(7+round))
			batch = append(batch, TensorAppend{Seq: s, K: kt, V: vt})
			ks, vs = append(ks, k), append(vs, v)
		}
		before := c.Stats().BindBatches
		require.NoError(t, c.AppendTensorsBatch(ctx, batch))
		require.LessOrEqual(t, c.Stats().BindBatches, before+1, "the batch's binds are one batch")
		for i, ap := range batch {
			wantK[ap.Seq], wantV[ap.Seq] = append(wantK[ap.Seq], ks[i]...), append(wantV[ap.Seq], vs[i]...)
		}
		checkCommitted(t, c)
	}
	checkSequences(t, c, wantK, wantV)
	kt, vt, _, _ := tensors(2)
	require.ErrorContains(t, c.AppendTensorsBatch(ctx, []TensorAppend{{0, kt, vt}, {0, kt, vt}}), "sequence 0 is appended to twice")
	big, bigV, _, _ := tensors(21 * tokensPerPage) // more pages than the budget holds
	err := c.AppendTensorsBatch(ctx, []TensorAppend{{1, kt, vt}, {2, big, bigV}})
	require.ErrorIs(t, err, vk.ErrOutOfDeviceMemory)
	require.Zero(t, c.Stats().SeqPages[1], "sequence 1 kept pages of a failed batch")
	checkCommitted(t, c)
	checkSequences(t, c, wantK, wantV)
	require.NoError(t, c.AppendTensorsBatch(ctx, []TensorAppend{{1, kt, vt}}))
	require.Equal(t, 2, c.Len(1))
}

// TestKVCacheBatch: Batch groups sequences by buffer, in the order given, at their regions'
// first tokens, with their lengths; its views reach the last token of a group's sequences and
// read what the sequences' own views read.
func TestKVCacheBatch(t *testing.T) {
	a := newTestAllocator(t)
	limit := int(a.Device().Info().MaxStorageBufferRange)
	tb := 5 * 48 * 2 // 480 bytes a token: a page is not a whole number of tokens
	c := newTestCache(t, a, KVCacheConfig{Sequences: 5, MaxLen: limit/3/tb + 1, Heads: 5, HeadDim: 48, DType: F16})
	require.Equal(t, 2, c.perBuffer)
	ctx := context.Background()
	r := rand.New(rand.NewPCG(15, 16))
	lens := []int{3, 0, 9, 4, 1}
	for s, n := range lens {
		if n > 0 {
			require.NoError(t, c.Append(ctx, s, randomValues(r, n*5*48), randomValues(r, n*5*48)))
		}
	}
	groups, err := c.Batch([]int{4, 3, 0, 2})
	require.NoError(t, err)
	require.Len(t, groups, 3)
	wantIndex := [][]int{{2}, {1, 3}, {0}} // buffers 0 (sequence 0), 1 (3, 2), 2 (4)
	for gi, g := range groups {
		require.Equal(t, wantIndex[gi], g.Index)
		tokens := 0
		for i, idx := range g.Index {
			s := []int{4, 3, 0, 2}[idx]
			require.Equal(t, lens[s], g.Lens[i])
			k, v, err := c.View(s)
			require.NoError(t, err)
			require.Equal(t, k.Offset, g.Starts[i]*5*48, "sequence %d starts on a token", s)
			require.Same(t, k.Buffer(), g.K.Buffer())
			require.Same(t, v.Buffer(), g.V.Buffer())
			tokens = max(tokens, g.Starts[i]+g.Lens[i])
		}
		require.Equal(t, []int{tokens, 5, 48}, g.K.Shape)
		require.Equal(t, []int{5 * 48, 48, 1}, g.K.Strides)
	}
	_, err = c.Batch([]int{0, 1})
	require.ErrorContains(t, err, "sequence 1 is empty")
	_, err = c.Batch([]int{2, 2})
	require.ErrorContains(t, err, "sequence 2 is twice")
	_, err = c.Batch(nil)
	require.ErrorContains(t, err, "no sequences")
	c.Close()
	_, err = c.Batch([]int{0})
	require.ErrorIs(t, err, ErrClosed)
}
