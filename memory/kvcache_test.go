package memory

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"github.com/vkattn/vkattn/internal/testenv"
	"github.com/vkattn/vkattn/vk"
)

// testPaged makes newTestCache's caches paged (TestKVCachePaged).
var testPaged bool

// newTestCache makes a cache on a, closed at cleanup (before the allocator): paged under
// testPaged, else on sparse buffers, skipping (or failing where a device is required) if the
// device lacks sparse residency.
func newTestCache(t *testing.T, a *Allocator, cfg KVCacheConfig) *KVCache {
	t.Helper()
	if testPaged {
		cfg.Paged = true
	} else if err := a.Device().SparseResidency(); err != nil {
		testenv.Lacks(t, err)
	}
	c, err := NewKVCache(a, cfg)
	require.NoError(t, err)
	require.Equal(t, testPaged, c.Paged())
	t.Cleanup(c.Close)
	return c
}

// withPages returns cfg with MaxLen raised, where needed, to hold pages whole pages of one tensor
// on this device: page sizes differ between devices (lavapipe's sparse pages hold a few dozen
// tokens of the tests' shapes, an H100's 64 KiB pages hundreds), so a test that appends whole
// pages sizes its sequences from the device's pages.
func withPages(t *testing.T, a *Allocator, cfg KVCacheConfig, pages int) KVCacheConfig {
	t.Helper()
	for range 8 {
		c := newTestCache(t, a, cfg)
		need := pages * int(c.page/c.tokenBytes)
		c.Close()
		if need <= cfg.MaxLen {
			return cfg
		}
		cfg.MaxLen = need // the paged layout's pages may grow with MaxLen: measure again
	}
	t.Fatalf("no MaxLen holds %d pages: the page grows with it", pages)
	return cfg
}

// retiredBytes is the memory of the buffers a paged cache's pages moved out of, until Trim.
func retiredBytes(c *KVCache) uint64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := uint64(0)
	if c.paged != nil {
		for _, b := range c.paged.retired {
			n += b.size
		}
	}
	return n
}

// download reads sequence seq's K (which 0) or V (1) as float32 values: through its views, or
// for the paged layout, whose views have no transfers, page by page.
func download(t *testing.T, c *KVCache, seq, which int) []float32 {
	t.Helper()
	ctx := context.Background()
	if c.paged == nil {
		k, v, err := c.View(seq)
		require.NoError(t, err)
		got, err := []*Tensor{k, v}[which].Download(ctx)
		require.NoError(t, err)
		return got
	}
	c.mu.Lock()
	runs := c.dests(seq, 0, c.seqs[seq].len)
	c.mu.Unlock()
	var out []float32
	dsize := uint64(c.cfg.DType.Size())
	for _, d := range runs {
		b := []*Buffer{d.k, d.v}[which]
		run := &Tensor{DType: c.cfg.DType, Shape: []int{int(d.n / dsize)}, Strides: []int{1}, Offset: int(d.off / dsize), buf: b, owner: c.a}
		got, err := run.Download(ctx)
		require.NoError(t, err)
		out = append(out, got...)
	}
	return out
}

// rounded is x as dt stores it.
func rounded(dt DType, x float32) float32 {
	switch dt {
	case F16:
		return Float16From(Float16Bits(x))
	case BF16:
		return BFloat16From(BFloat16Bits(x))
	}
	return x
}

func randomValues(r *rand.Rand, n int) []float32 {
	out := make([]float32, n)
	for i := range out {
		out[i] = float32(r.NormFloat64())
	}
	return out
}

// checkSequences downloads every non-empty sequence's views and compares them with want (the
// values appended, per sequence) as the cache's dtype stores them.
func checkSequences(t *testing.T, c *KVCache, wantK, wantV [][]float32) {
	t.Helper()
	for s := range wantK {
		require.Equal(t, len(wantK[s])/(c.cfg.Heads*c.cfg.HeadDim), c.Len(s), "sequence %d length", s)
		if len(wantK[s]) == 0 {
			continue
		}
		for which, p := range []struct {
			name string
			want []float32
		}{{"k", wantK[s]}, {"v", wantV[s]}} {
			got := download(t, c, s, which)
			require.Len(t, got, len(p.want))
			for i, x := range p.want {
				if got[i] != rounded(c.cfg.DType, x) {
					t.Fatalf("sequence %d %s[%d] = %v, want %v", s, p.name, i, got[i], rounded(c.cfg.DType, x))
				}
			}
		}
	}
}

// checkCommitted checks the commit bound: per sequence and tensor, the pages bound cover its
// tokens and exceed them by less than one page plus the headroom.
func checkCommitted(t *testing.T, c *KVCache) {
	t.Helper()
	st := c.Stats()
	tb := c.tokenBytes
	var need, committed uint64
	for s, n := range st.SeqTokens {
		have := uint64(st.SeqPages[s]/2) * st.PageSize // per tensor
		require.Equal(t, 0, st.SeqPages[s]%2, "sequence %d: K and V have as many pages", s)
		require.GreaterOrEqual(t, have, uint64(n)*tb, "sequence %d: %d pages for %d tokens", s, st.SeqPages[s], n)
		limit := uint64(n)*tb + st.PageSize + uint64(c.cfg.Headroom)*tb
		if n == 0 {
			limit = uint64(c.cfg.Headroom)*tb + st.PageSize // nothing held yet, Reserve aside
		}
		require.Less(t, have, limit, "sequence %d: %d pages for %d tokens, headroom %d", s, st.SeqPages[s], n, c.cfg.Headroom)
		if c.cfg.Headroom == 0 {
			require.Equal(t, 2*c.pagesFor(n), st.SeqPages[s], "sequence %d: pages for %d tokens", s, n)
		}
		need += uint64(n) * tb
		committed += have
	}
	require.Equal(t, 2*need, st.NeededBytes, "K and V")
	require.Equal(t, 2*committed, st.CommittedBytes, "K and V")
	require.Equal(t, st.MemoryBytes, uint64(2*committed/st.PageSize+uint64(st.FreePages))*st.PageSize+retiredBytes(c), "memory = bound + free pages")
}

// TestKVCacheGrowTokenByToken grows three sequences one token at a time, interleaved, and checks
// after every append the commit bound and, now and then and at the end, every value.
func TestKVCacheGrowTokenByToken(t *testing.T) {
	a := newTestAllocator(t)
	for _, dt := range []DType{F32, F16, BF16} {
		for _, headroom := range []int{0, 7} {
			t.Run(fmt.Sprintf("%s/headroom%d", dt, headroom), func(t *testing.T) {
				c := newTestCache(t, a, KVCacheConfig{Sequences: 3, MaxLen: 70, Heads: 2, HeadDim: 24, DType: dt, Headroom: headroom})
				r := rand.New(rand.NewPCG(uint64(dt), uint64(headroom)))
				per := 2 * 24
				target := []int{70, 1 + r.IntN(69), 1 + r.IntN(69)}
				wantK, wantV := make([][]float32, 3), make([][]float32, 3)
				for step := 0; ; step++ {
					var open []int
					for s := range target {
						if len(wantK[s]) < target[s]*per {
							open = append(open, s)
						}
					}
					if len(open) == 0 {
						break
					}
					s := open[r.IntN(len(open))]
					k, v := randomValues(r, per), randomValues(r, per)
					require.NoError(t, c.Append(context.Background(), s, k, v))
					wantK[s], wantV[s] = append(wantK[s], k...), append(wantV[s], v...)
					checkCommitted(t, c)
					if step%25 == 0 {
						checkSequences(t, c, wantK, wantV)
					}
				}
				checkSequences(t, c, wantK, wantV)
				require.Error(t, c.Append(context.Background(), 0, randomValues(r, per), randomValues(r, per)), "past MaxLen")
			})
		}
	}
}

// TestKVCacheReleaseReuse fills, releases and refills sequences for a few rounds: pages are
// reused (no more memory after the first round), released sequences hold nothing, and at the
// end everything is unbound and Trim frees it all; validation at the device's destruction (at
// cleanup) finds nothing alive.
func TestKVCacheReleaseReuse(t *testing.T) {
	a := newTestAllocator(t)
	c := newTestCache(t, a, KVCacheConfig{Sequences: 4, MaxLen: 300, Heads: 2, HeadDim: 32, DType: F16, Headroom: 5, ChunkPages: 4})
	r := rand.New(rand.NewPCG(3, 4))
	per := 2 * 32
	lengths := []int{300, 17, 129, 64}
	wantK, wantV := make([][]float32, 4), make([][]float32, 4)
	var memory uint64
	for round := 0; round < 3; round++ {
		for s, n := range lengths {
			for left := n; left > 0; {
				chunk := min(left, 1+r.IntN(40))
				k, v := randomValues(r, chunk*per), randomValues(r, chunk*per)
				require.NoError(t, c.Append(context.Background(), s, k, v))
				wantK[s], wantV[s] = append(wantK[s], k...), append(wantV[s], v...)
				left -= chunk
			}
		}
		checkCommitted(t, c)
		checkSequences(t, c, wantK, wantV)
		st := c.Stats()
		if round == 0 {
			memory = st.MemoryBytes
		}
		require.Equal(t, memory, st.MemoryBytes, "round %d: pages are reused", round)
		for s := range lengths {
			require.NoError(t, c.Release(s))
			wantK[s], wantV[s] = nil, nil
		}
		st = c.Stats()
		require.Zero(t, st.CommittedBytes)
		require.Zero(t, st.NeededBytes)
		require.Equal(t, []int{0, 0, 0, 0}, st.SeqPages)
		require.Equal(t, []int{0, 0, 0, 0}, st.SeqTokens)
		require.Equal(t, memory, uint64(st.FreePages)*st.PageSize+retiredBytes(c))
		_, _, err := c.View(0)
		require.ErrorContains(t, err, "empty")
		// The next round puts the lengths in other sequences.
		lengths = append(lengths[1:], lengths[0])
	}
	c.Trim()
	st := c.Stats()
	require.Zero(t, st.MemoryBytes)
	require.Zero(t, st.Allocations)
	require.Zero(t, st.FreePages)
	for _, ch := range c.pool.chunks {
		require.Zero(t, ch.used)
	}
	// Usable after Trim.
	k, v := randomValues(r, 3*per), randomValues(r, 3*per)
	require.NoError(t, c.Append(context.Background(), 2, k, v))
	wantK[2], wantV[2] = k, v
	checkSequences(t, c, wantK, wantV)
	checkCommitted(t, c)
}

// TestKVCacheBindsPages checks that a sequence's data lives in the pages bound to it: the pages
// a released sequence gave back are bound to the next sequence that grows, whose region then
// reads the old data before anything is written to it.
func TestKVCacheBindsPages(t *testing.T) {
	a := newTestAllocator(t)
	c := newTestCache(t, a, withPages(t, a, KVCacheConfig{Sequences: 2, MaxLen: 200, Heads: 2, HeadDim: 16, DType: F32}, 3))
	r := rand.New(rand.NewPCG(14, 15))
	n := c.pagesFor(1) * int(c.page/c.tokenBytes) * 3 // three whole pages
	k, v := randomValues(r, n*32), randomValues(r, n*32)
	require.NoError(t, c.Append(context.Background(), 0, k, v))
	require.NoError(t, c.Release(0))
	require.NoError(t, c.Reserve(1, n))
	require.Equal(t, 6, c.Stats().SeqPages[1], "three pages each of K and V")
	c.seqs[1].len = n // expose the reserved tokens, unwritten, to View
	checkSequences(t, c, [][]float32{nil, k}, [][]float32{nil, v})
}

// TestKVCacheOutOfMemory spends a small page budget: the failing append is an error wrapping
// vk.ErrOutOfDeviceMemory, changes nothing, and once a sequence is released appends work again.
func TestKVCacheOutOfMemory(t *testing.T) {
	a := newTestAllocator(t)
	// 10 pages hold 5 pages of K and V; sequences hold 10 pages each, so the budget runs out first.
	c := newTestCache(t, a, withPages(t, a, KVCacheConfig{Sequences: 3, MaxLen: 400, Heads: 2, HeadDim: 32, DType: F32, MaxPages: 10, ChunkPages: 3, Headroom: 20}, 10))
	tokensPerPage := int(c.page / c.tokenBytes)
	r := rand.New(rand.NewPCG(5, 6))
	per := 2 * 32
	wantK, wantV := make([][]float32, 3), make([][]float32, 3)
	appendN := func(s, n int) error {
		k, v := randomValues(r, n*per), randomValues(r, n*per)
		err := c.Append(context.Background(), s, k, v)
		if err == nil {
			wantK[s], wantV[s] = append(wantK[s], k...), append(wantV[s], v...)
		}
		return err
	}
	require.NoError(t, appendN(1, 1)) // one page each, headroom best effort
	var err error
	for err == nil {
		err = appendN(0, tokensPerPage)
	}
	require.ErrorIs(t, err, vk.ErrOutOfDeviceMemory)
	t.Logf("%v", err)
	st := c.Stats()
	require.Equal(t, 10*c.page, st.MemoryBytes-retiredBytes(c), "the budget is spent")
	checkCommitted(t, c)
	checkSequences(t, c, wantK, wantV)
	require.ErrorIs(t, c.Reserve(2, 10*tokensPerPage), vk.ErrOutOfDeviceMemory)
	require.Zero(t, c.Stats().SeqPages[2])

	// Sequence 1 holds a page or two of each tensor; the eight or fewer pages left take sequence
	// 2's two pages and its headroom (20 tokens: a page where pages are large), then sequence 1's
	// next page.
	require.NoError(t, c.Release(0))
	wantK[0], wantV[0] = nil, nil
	require.NoError(t, appendN(2, 2*tokensPerPage))
	require.NoError(t, appendN(1, tokensPerPage))
	checkCommitted(t, c)
	checkSequences(t, c, wantK, wantV)
}

// TestKVCacheAllocationFallback makes the chunk larger than the device allows in one
// allocation: the real allocation fails and the pool allocates just the pages needed.
func TestKVCacheAllocationFallback(t *testing.T) {
	a := newTestAllocator(t)
	maxAlloc := a.Device().Info().MaxMemoryAllocationSize
	if err := a.Device().SparseResidency(); err != nil {
		testenv.Lacks(t, err)
	}
	probe, err := a.Device().NewSparseBuffer(1)
	require.NoError(t, err)
	_, page, _ := probe.Requirements()
	probe.Close()
	c := newTestCache(t, a, KVCacheConfig{Sequences: 1, MaxLen: 64, Heads: 1, HeadDim: 64, DType: F32, ChunkPages: int(maxAlloc/page) + 1})
	r := rand.New(rand.NewPCG(7, 8))
	k, v := randomValues(r, 5*64), randomValues(r, 5*64)
	require.NoError(t, c.Append(context.Background(), 0, k, v))
	st := c.Stats()
	require.Equal(t, 1, st.Allocations)
	require.Equal(t, uint64(2*c.pagesFor(5))*page, st.MemoryBytes)
	checkSequences(t, c, [][]float32{k}, [][]float32{v})
}

func TestKVCacheArguments(t *testing.T) {
	a := newTestAllocator(t)
	if err := a.Device().SparseResidency(); err != nil {
		testenv.Lacks(t, err)
	}
	good := KVCacheConfig{Sequences: 2, MaxLen: 10, Heads: 2, HeadDim: 8, DType: F16}
	info := a.Device().Info()
	for want, mod := range map[string]func(*KVCacheConfig){
		"Sequences": func(c *KVCacheConfig) { c.Sequences = 0 },
		"MaxLen":    func(c *KVCacheConfig) { c.MaxLen = -1 },
		"Heads":     func(c *KVCacheConfig) { c.Heads = 0 },
		"HeadDim":   func(c *KVCacheConfig) { c.HeadDim = 0 },
		"HeadDim must be even for f16 (kernels read 16-bit values in pairs), got 7": func(c *KVCacheConfig) { c.HeadDim = 7 },
		"HeadDim must be even for bf16":                                             func(c *KVCacheConfig) { c.HeadDim, c.DType = 5, BF16 },
		"Headroom":                                                                  func(c *KVCacheConfig) { c.Headroom = -1 },
		"ChunkPages":                                                                func(c *KVCacheConfig) { c.ChunkPages = -2 },
		"MaxPages":                                                                  func(c *KVCacheConfig) { c.MaxPages = -3 },
		"DType":                                                                     func(c *KVCacheConfig) { c.DType = 9 },
		"maxStorageBufferRange":                                                     func(c *KVCacheConfig) { c.MaxLen = int(info.MaxStorageBufferRange)/32 + 1 },
		// Regions of half the range, so that rounding them up to pages stays within it.
		"sparseAddressSpaceSize": func(c *KVCacheConfig) { c.MaxLen, c.Sequences = int(info.MaxStorageBufferRange)/64, 1<<20 },
	} {
		cfg := good
		mod(&cfg)
		c, err := NewKVCache(a, cfg)
		require.ErrorContains(t, err, want)
		require.Nil(t, c)
	}

	c := newTestCache(t, a, good)
	ctx := context.Background()
	kv := make([]float32, 3*16)
	for want, err := range map[string]error{
		"sequence -1 out of range":  c.Append(ctx, -1, kv, kv),
		"sequence 2 out of range":   c.Append(ctx, 2, kv, kv),
		"multiple of Heads*HeadDim": c.Append(ctx, 0, kv[:20], kv[:20]),
		"k has 48 values, v 32":     c.Append(ctx, 0, kv, kv[:32]),
		"exceed MaxLen 10":          c.Append(ctx, 0, make([]float32, 11*16), make([]float32, 11*16)),
		"tokens must be >= 0":       c.Reserve(0, -1),
		"11 more exceed MaxLen":     c.Reserve(1, 11),
		"appears twice":             c.ReserveBatch([]Reservation{{Seq: 0, Tokens: 1}, {Seq: 0, Tokens: 2}}),
		"sequence 3 out of range":   c.ReserveBatch([]Reservation{{Seq: 0, Tokens: 1}, {Seq: 3, Tokens: 2}}),
		"sequence 5 out of range":   c.Release(5),
	} {
		require.ErrorContains(t, err, want)
	}
	_, _, err := c.View(0)
	require.ErrorContains(t, err, "sequence 0 is empty")
	_, _, err = c.View(7)
	require.ErrorContains(t, err, "sequence 7 out of range")

	t32, err := a.NewTensor(F32, 3, 2, 8)
	require.NoError(t, err)
	defer t32.Close()
	t16, err := a.NewTensor(F16, 3, 2, 8)
	require.NoError(t, err)
	defer t16.Close()
	wrong, err := a.NewTensor(F16, 3, 8, 2)
	require.NoError(t, err)
	defer wrong.Close()
	t4, err := a.NewTensor(F16, 1, 4, 2, 8)
	require.NoError(t, err)
	defer t4.Close()
	other := NewAllocator(a.Device())
	defer other.Close()
	foreign, err := other.NewTensor(F16, 3, 2, 8)
	require.NoError(t, err)
	for want, err := range map[string]error{
		"k is f32":                c.AppendTensors(ctx, 0, t32, t16),
		"v has shape [3 8 2]":     c.AppendTensors(ctx, 0, t16, wrong),
		"k has 3 tokens, v 4":     c.AppendTensors(ctx, 0, t16, t4),
		"k is nil":                c.AppendTensors(ctx, 0, nil, t16),
		"another allocator":       c.AppendTensors(ctx, 0, foreign, t16),
		"sequence 9 out of range": c.AppendTensors(ctx, 9, t16, t16),
	} {
		require.ErrorContains(t, err, want)
	}
	st := c.Stats()
	require.Equal(t, []int{0, 0}, st.SeqTokens, "failed calls change nothing")
	require.Equal(t, []int{0, 0}, st.SeqPages)
	require.Zero(t, st.MemoryBytes)
}

// TestKVCacheAppendTensors appends from device tensors of both accepted shapes.
func TestKVCacheAppendTensors(t *testing.T) {
	a := newTestAllocator(t)
	c := newTestCache(t, a, KVCacheConfig{Sequences: 2, MaxLen: 100, Heads: 4, HeadDim: 16, DType: BF16})
	ctx := context.Background()
	r := rand.New(rand.NewPCG(9, 10))
	wantK, wantV := make([][]float32, 2), make([][]float32, 2)
	for i, shape := range [][]int{{5, 4, 16}, {1, 40, 4, 16}, {1, 4, 16}} {
		n := shape[len(shape)-3]
		k, v := randomValues(r, n*64), randomValues(r, n*64)
		kt, err := a.NewTensor(BF16, shape...)
		require.NoError(t, err)
		vt, err := a.NewTensor(BF16, shape...)
		require.NoError(t, err)
		require.NoError(t, kt.Upload(ctx, k))
		require.NoError(t, vt.Upload(ctx, v))
		require.NoError(t, c.AppendTensors(ctx, i%2, kt, vt))
		kt.Close()
		vt.Close()
		wantK[i%2], wantV[i%2] = append(wantK[i%2], k...), append(wantV[i%2], v...)
	}
	checkSequences(t, c, wantK, wantV)
	checkCommitted(t, c)
}

// TestKVCacheSeveralBuffers makes sequences too large for three to share a buffer under
// maxStorageBufferRange, so K and V are each split over buffers.
func TestKVCacheSeveralBuffers(t *testing.T) {
	a := newTestAllocator(t)
	limit := int(a.Device().Info().MaxStorageBufferRange)
	tb := 8 * 64 * 4
	maxLen := limit / 3 / tb // three fit no buffer... with rounding, two per buffer
	c := newTestCache(t, a, KVCacheConfig{Sequences: 5, MaxLen: maxLen + 1, Heads: 8, HeadDim: 64, DType: F32})
	require.Equal(t, 2, c.perBuffer)
	require.Len(t, c.k, 3)
	r := rand.New(rand.NewPCG(11, 12))
	wantK, wantV := make([][]float32, 5), make([][]float32, 5)
	for _, s := range []int{4, 0, 3, 1} {
		k, v := randomValues(r, 3*8*64), randomValues(r, 3*8*64)
		require.NoError(t, c.Append(context.Background(), s, k, v))
		wantK[s], wantV[s] = k, v
	}
	checkSequences(t, c, wantK, wantV)
	k0, _, err := c.View(0)
	require.NoError(t, err)
	k1, _, err := c.View(1)
	require.NoError(t, err)
	k3, _, err := c.View(3)
	require.NoError(t, err)
	require.Same(t, k0.Buffer(), k1.Buffer())
	require.NotSame(t, k0.Buffer(), k3.Buffer())
	require.Equal(t, 0, k0.Offset)
	require.Positive(t, k1.Offset)
}

// TestKVCacheConcurrentAppends appends to different sequences from several goroutines.
func TestKVCacheConcurrentAppends(t *testing.T) {
	a := newTestAllocator(t)
	c := newTestCache(t, a, KVCacheConfig{Sequences: 3, MaxLen: 64, Heads: 1, HeadDim: 32, DType: F32, Headroom: 3})
	wantK, wantV := make([][]float32, 3), make([][]float32, 3)
	var wg sync.WaitGroup
	errs := make([]error, 3)
	for s := range 3 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := rand.New(rand.NewPCG(13, uint64(s)))
			for range 20 {
				k, v := randomValues(r, 3*32), randomValues(r, 3*32)
				if err := c.Append(context.Background(), s, k, v); err != nil {
					errs[s] = err
					return
				}
				wantK[s], wantV[s] = append(wantK[s], k...), append(wantV[s], v...)
			}
		}()
	}
	wg.Wait()
	require.NoError(t, errors.Join(errs...))
	checkSequences(t, c, wantK, wantV)
	checkCommitted(t, c)
}

// TestKVCacheClosedWithAllocator closes the allocator under an open cache: the cache is
// released (no leak at the device's destruction), its views report Closed and calls fail.
func TestKVCacheClosedWithAllocator(t *testing.T) {
	a := newTestAllocator(t)
	if err := a.Device().SparseResidency(); err != nil {
		testenv.Lacks(t, err)
	}
	c, err := NewKVCache(a, KVCacheConfig{Sequences: 1, MaxLen: 8, Heads: 1, HeadDim: 8, DType: F32})
	require.NoError(t, err)
	require.NoError(t, c.Append(context.Background(), 0, make([]float32, 16), make([]float32, 16)))
	k, _, err := c.View(0)
	require.NoError(t, err)
	k.Buffer().Close() // the cache's, not the caller's: a no-op
	require.False(t, k.Closed())
	a.Close()
	require.True(t, k.Closed())
	require.ErrorIs(t, c.Append(context.Background(), 0, make([]float32, 8), make([]float32, 8)), ErrClosed)
	require.ErrorIs(t, c.Release(0), ErrClosed)
	_, err = k.Download(context.Background())
	require.ErrorIs(t, err, ErrClosed)
	c.Close()
	c.Close()
	_, err = NewKVCache(a, KVCacheConfig{Sequences: 1, MaxLen: 8, Heads: 1, HeadDim: 8, DType: F32})
	require.ErrorIs(t, err, ErrClosed)
}

// BenchmarkKVCachePageCommit measures one commit of one page to a sequence's K and one to its V
// (one vkQueueBindSparse of two binds, submitted and then waited for), with pages reused from the
// free list; submit-ns/op is the part spent submitting (what Append and Reserve wait for).
func BenchmarkKVCachePageCommit(b *testing.B) {
	in, err := vk.NewInstance(vk.InstanceOptions{Validation: testenv.Validation()})
	if err != nil {
		testenv.NoDevice(b, err)
	}
	defer in.Close()
	d, err := in.OpenDevice(0, vk.DeviceOptions{})
	if err != nil {
		testenv.NoDevice(b, err)
	}
	defer d.Close()
	if err := d.SparseResidency(); err != nil {
		testenv.Lacks(b, err)
	}
	a := NewAllocator(d)
	defer a.Close()
	probe, err := d.NewSparseBuffer(1)
	require.NoError(b, err)
	_, page, _ := probe.Requirements()
	probe.Close()
	const maxLen = 1024 // one token is one page
	c, err := NewKVCache(a, KVCacheConfig{Sequences: 1, MaxLen: maxLen, Heads: 1, HeadDim: int(page / 4), DType: F32})
	require.NoError(b, err)
	defer c.Close()
	require.NoError(b, c.Reserve(0, maxLen)) // allocate every page once
	require.NoError(b, c.Release(0))
	ctx := context.Background()
	var submit time.Duration
	b.ResetTimer()
	for i := range b.N {
		n := i%maxLen + 1
		if n == 1 && i > 0 {
			b.StopTimer()
			require.NoError(b, c.Release(0))
			require.NoError(b, c.WaitBinds(ctx))
			b.StartTimer()
		}
		t0 := time.Now()
		if err := c.Reserve(0, n); err != nil {
			b.Fatal(err)
		}
		submit += time.Since(t0)
		if err := c.WaitBinds(ctx); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	b.ReportMetric(float64(page), "page-bytes")
	b.ReportMetric(float64(submit.Nanoseconds())/float64(b.N), "submit-ns/op")
	if err := in.CheckValidation(); err != nil {
		b.Fatal(err)
	}
}

// TestKVCacheReleaseClosesViews releases a sequence: the views made before, and views of them,
// report Closed and fail with ErrClosed, even once the sequence holds tokens again (on the same
// pages); views made after are open.
func TestKVCacheReleaseClosesViews(t *testing.T) {
	a := newTestAllocator(t)
	c := newTestCache(t, a, KVCacheConfig{Sequences: 2, MaxLen: 16, Heads: 1, HeadDim: 32, DType: F32})
	ctx := context.Background()
	kv := make([]float32, 4*32)
	require.NoError(t, c.Append(ctx, 0, kv, kv))
	require.NoError(t, c.Append(ctx, 1, kv, kv))
	k, v, err := c.View(0)
	require.NoError(t, err)
	sub, err := k.Reshape(4, 32)
	require.NoError(t, err)
	k1, _, err := c.View(1)
	require.NoError(t, err)
	require.NoError(t, c.Release(0))
	require.NoError(t, c.Append(ctx, 0, kv[:32], kv[:32]))
	for name, x := range map[string]*Tensor{"k": k, "v": v, "reshaped k": sub} {
		require.True(t, x.Closed(), "%s of the released sequence", name)
		_, err := x.Download(ctx)
		require.ErrorIs(t, err, ErrClosed, name)
	}
	require.ErrorIs(t, c.AppendTensors(ctx, 1, k, v), ErrClosed)
	require.False(t, k1.Closed(), "a view of another sequence")
	k0, _, err := c.View(0)
	require.NoError(t, err)
	require.False(t, k0.Closed())
	got, err := k0.Download(ctx)
	require.NoError(t, err)
	require.Len(t, got, 32)
}
