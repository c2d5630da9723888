package memory

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"runtime/pprof"
	"testing"
	"time"

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

// TestKVCacheExtend appends by writing views of the new tokens in place (Upload into the views,
// as a kernel would write them) and committing: the sequences hold what was written, after what
// they held, and the views wait for the pages' binds. An aborted extension leaves the sequences
// and the pages as they were; calls on the sequences being written wait for it (Release); a paged cache,
// empty extends and a sequence named twice are refused.
func TestKVCacheExtend(t *testing.T) {
	a := newTestAllocator(t)
	ctx := context.Background()
	paged, err := NewKVCache(a, KVCacheConfig{Sequences: 1, MaxLen: 40, Heads: 3, HeadDim: 16, DType: F32, Paged: true})
	require.NoError(t, err)
	defer paged.Close()
	_, err = paged.Extend(ctx, []Extend{{Seq: 0, Tokens: 1}})
	require.ErrorContains(t, err, "paged layout")
	if testPaged {
		return
	}
	c := newTestCache(t, a, KVCacheConfig{Sequences: 3, MaxLen: 400, Heads: 3, HeadDim: 16, DType: F32, Headroom: 5})
	r := rand.New(rand.NewPCG(15, 16))
	per := 3 * 16
	wantK, wantV := make([][]float32, 3), make([][]float32, 3)
	for range 4 {
		extends := []Extend{{Seq: 2, Tokens: 1 + r.IntN(40)}, {Seq: 0, Tokens: 1 + r.IntN(40)}}
		x, err := c.Extend(ctx, extends)
		require.NoError(t, err)
		for i, e := range extends {
			require.Equal(t, []int{1, e.Tokens, 3, 16}, x.K[i].Shape)
			k, v := randomValues(r, e.Tokens*per), randomValues(r, e.Tokens*per)
			require.NoError(t, x.K[i].Upload(ctx, k))
			require.NoError(t, x.V[i].Upload(ctx, v))
			wantK[e.Seq], wantV[e.Seq] = append(wantK[e.Seq], k...), append(wantV[e.Seq], v...)
		}
		x.Commit()
		x.Abort() // after Commit: nothing
	}
	checkSequences(t, c, wantK, wantV)

	st := c.Stats()
	x, err := c.Extend(ctx, []Extend{{Seq: 1, Tokens: 30}, {Seq: 0, Tokens: 2}})
	require.NoError(t, err)
	released := make(chan error, 1)
	go func() { released <- c.Release(1) }() // waits for the extension to end
	require.Greater(t, c.Stats().SeqPages[1], st.SeqPages[1], "the extension took pages")
	select {
	case err := <-released:
		t.Fatalf("Release returned (%v) while the sequence was being written", err)
	case <-time.After(50 * time.Millisecond):
	}
	x.Abort()
	require.NoError(t, <-released)
	require.Equal(t, st.SeqTokens, c.Stats().SeqTokens, "an aborted extension appends nothing")
	require.Equal(t, st.SeqPages, c.Stats().SeqPages, "and gives its pages back")
	checkSequences(t, c, wantK, wantV)

	// The writer needs the allocator (Upload) while an append to its sequence waits and a
	// buffer's Close waits for the allocator: the append waits without holding it.
	x, err = c.Extend(ctx, []Extend{{Seq: 1, Tokens: 2}})
	require.NoError(t, err)
	k1, v1, k2, v2 := randomValues(r, 2*per), randomValues(r, 2*per), randomValues(r, per), randomValues(r, per)
	appended, closed := make(chan error, 1), make(chan struct{})
	go func() { appended <- c.Append(ctx, 1, k2, v2) }()
	time.Sleep(20 * time.Millisecond)
	b, err := a.NewTensor(F32, 4)
	require.NoError(t, err)
	go func() { b.Close(); close(closed) }()
	time.Sleep(20 * time.Millisecond)
	written := make(chan error, 1)
	go func() { written <- errors.Join(x.K[0].Upload(ctx, k1), x.V[0].Upload(ctx, v1)) }()
	select {
	case err := <-written:
		require.NoError(t, err)
	case <-time.After(30 * time.Second):
		// A deadlock: the test's cleanup would hang too, so the process ends here.
		_ = pprof.Lookup("goroutine").WriteTo(os.Stderr, 1)
		fmt.Fprintln(os.Stderr, "FAIL: TestKVCacheExtend: the extension's writer waits for the allocator, which an append waiting for it holds")
		os.Exit(1)
	}
	x.Commit()
	require.NoError(t, <-appended)
	<-closed
	wantK[1], wantV[1] = append(k1, k2...), append(v1, v2...)
	checkSequences(t, c, wantK, wantV)

	_, err = c.Extend(ctx, []Extend{{Seq: 1, Tokens: 0}})
	require.ErrorContains(t, err, "tokens must be > 0")
	_, err = c.Extend(ctx, []Extend{{Seq: 1, Tokens: 1}, {Seq: 1, Tokens: 1}})
	require.ErrorContains(t, err, "appended to twice")

	// Closing the cache wakes what waits for a sequence being written.
	x, err = c.Extend(ctx, []Extend{{Seq: 2, Tokens: 1}})
	require.NoError(t, err)
	go func() { released <- c.Release(2) }()
	time.Sleep(20 * time.Millisecond)
	c.Close()
	select {
	case err := <-released:
		require.ErrorIs(t, err, ErrClosed)
	case <-time.After(30 * time.Second):
		t.Fatal("Release still waits for a sequence of a closed cache")
	}
	x.Abort() // a closed cache: nothing
}
