package memory

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"github.com/vkattn/vkattn/internal/testenv"
	"github.com/vkattn/vkattn/vk"
)

// TestKVCacheBindsAhead grows sequences one token at a time with a headroom of a few pages:
// after the first append, no append needs a page that was not bound before it (the binds run
// ahead of need), the timeline value advances with each batch and, once the binds are done,
// views need no wait.
func TestKVCacheBindsAhead(t *testing.T) {
	a := newTestAllocator(t)
	probe := newTestCache(t, a, KVCacheConfig{Sequences: 1, MaxLen: 1, Heads: 1, HeadDim: 1, DType: F32})
	page := int(probe.PageSize())
	perPage := 4 // tokens per page of each tensor
	headroom := 3 * perPage
	c := newTestCache(t, a, KVCacheConfig{Sequences: 2, MaxLen: 40 * perPage, Heads: 1, HeadDim: page / 4 / perPage, DType: F32, Headroom: headroom})
	require.Equal(t, perPage, int(c.page/c.tokenBytes))
	r := rand.New(rand.NewPCG(21, 22))
	per := c.cfg.HeadDim
	wantK, wantV := make([][]float32, 2), make([][]float32, 2)
	batches := 0
	for n := 1; n <= c.cfg.MaxLen; n++ {
		for s := range 2 {
			before := c.Stats().SeqPages[s] / 2 // per tensor
			k, v := randomValues(r, per), randomValues(r, per)
			require.NoError(t, c.Append(context.Background(), s, k, v))
			wantK[s], wantV[s] = append(wantK[s], k...), append(wantV[s], v...)
			st := c.Stats()
			if n > 1 {
				require.LessOrEqual(t, c.pagesFor(n), before, "sequence %d, token %d: its page was not bound ahead", s, n)
			}
			require.GreaterOrEqual(t, st.SeqPages[s]/2, min(c.pagesFor(n+headroom/2), c.seqPages), "sequence %d, token %d: less than half the headroom ahead", s, n)
			require.GreaterOrEqual(t, st.BindBatches, batches)
			batches = st.BindBatches
			checkCommitted(t, c)
		}
	}
	t.Logf("%d batches for 2 sequences of %d pages", batches, c.seqPages)
	// A batch at the start, then one each time half the headroom (6 tokens, 1.5 pages) is
	// used, up to MaxLen: far fewer than one per page.
	require.Less(t, batches, 2*c.seqPages/2+4)
	require.Greater(t, batches, 2*(c.seqPages-3)/3-2)
	require.NoError(t, c.WaitBinds(context.Background()))
	v, err := c.tl.Value()
	require.NoError(t, err)
	require.Equal(t, uint64(batches), v, "one timeline value per batch")
	for s := range 2 {
		kt, vt, err := c.View(s)
		require.NoError(t, err)
		require.Empty(t, BindPoints(kt, vt), "bound and waited for: nothing to wait for")
	}
	checkSequences(t, c, wantK, wantV)
	require.NoError(t, c.Release(0))
	require.Equal(t, batches+1, c.Stats().BindBatches, "one batch unbinds both tensors")
	require.Empty(t, BindPoints(nil), "no tensor")
}

// TestKVCacheBindsDoNotBlock holds the cache's binds back behind a timeline value the test
// signals (as a slow binding queue would): Reserve returns at once, leaving the binds pending;
// a copy from the reserved pages, waiting for BindPoints, and an Append, whose copy waits for
// its binds, complete only once the binds are done; validation stays clean.
func TestKVCacheBindsDoNotBlock(t *testing.T) {
	a := newTestAllocator(t)
	c := newTestCache(t, a, KVCacheConfig{Sequences: 2, MaxLen: 64, Heads: 2, HeadDim: 16, DType: F32, Headroom: 4})
	r := rand.New(rand.NewPCG(23, 24))
	ctx := context.Background()
	per := 32
	k0, v0 := randomValues(r, 20*per), randomValues(r, 20*per)
	require.NoError(t, c.Append(ctx, 0, k0, v0))
	require.NoError(t, c.Release(0))
	require.NoError(t, c.WaitBinds(ctx))

	// The gate: the next batch waits for value last+1, which only the test signals.
	c.mu.Lock()
	gate := c.last + 1
	c.last = gate
	c.mu.Unlock()
	start := time.Now()
	require.NoError(t, c.Reserve(1, 20), "binds are submitted, not waited for")
	require.Less(t, time.Since(start), time.Second)
	value, err := c.tl.Value()
	require.NoError(t, err)
	require.Less(t, value, gate, "the binds are pending")
	c.seqs[1].len = 20 // the pages reused from sequence 0 hold its tokens
	kt, _, err := c.View(1)
	require.NoError(t, err)
	points := BindPoints(kt)
	require.Len(t, points, 1)
	require.Equal(t, gate+1, points[0].Value)

	// A view's Download waits for its pages' binds on the device too (where binds have a queue of
	// their own: on a device with one queue, as lavapipe, all later work waits for them anyway).
	downloaded := make(chan error, 1)
	go func() {
		got, err := kt.Download(ctx)
		if err == nil && !slices.Equal(got, k0) {
			err = errors.New("the view's download does not read sequence 0's keys")
		}
		downloaded <- err
	}()
	select {
	case err := <-downloaded:
		t.Fatalf("the view's download finished before its pages' binds: %v", err)
	case <-time.After(300 * time.Millisecond):
	}
	host, err := a.NewBuffer(uint64(20*per*4), Staging)
	require.NoError(t, err)
	defer host.Close()
	copied := make(chan error, 1)
	go func() {
		copied <- a.dev.Run(ctx, func(cmd *vk.Commands) error {
			cmd.After(points...)
			cmd.Copy(kt.Buffer().Buffer, uint64(kt.Offset)*4, host.Buffer, 0, uint64(20*per*4))
			cmd.HostBarrier()
			return nil
		})
	}()
	appended := make(chan error, 1)
	k1, v1 := randomValues(r, 30*per), randomValues(r, 30*per)
	go func() { appended <- c.Append(ctx, 1, k1, v1) }() // needs pages past the reserved ones
	select {
	case err := <-copied:
		t.Fatalf("the copy ran before the binds it waits for: %v", err)
	case err := <-appended:
		t.Fatalf("the append finished before its binds: %v", err)
	case <-time.After(300 * time.Millisecond):
	}
	require.NoError(t, c.tl.Signal(gate))
	for _, ch := range []chan error{copied, downloaded, appended} {
		select {
		case err := <-ch:
			require.NoError(t, err)
		case <-time.After(20 * time.Second):
			t.Fatal("the work did not finish once the binds were done")
		}
	}
	got := host.Bytes()[:20*per*4]
	require.Equal(t, encode(F32, k0), got, "the reserved pages, reused, hold sequence 0's keys")
	// Sequence 1 holds the 20 reserved tokens (sequence 0's, on its pages) and the 30 appended.
	checkSequences(t, c, [][]float32{nil, append(k0, k1...)}, [][]float32{nil, append(v0, v1...)})
	checkCommitted(t, c)
	testenv.CheckValidation(t, a.dev.Instance())
}

// TestKVCacheBindFailureQuarantines makes a batch of binds fail: the sequence stays as it was,
// and the batch's pages, whose binding is then unknown, are never handed out again nor freed by
// Trim; the cache stays usable.
func TestKVCacheBindFailureQuarantines(t *testing.T) {
	a := newTestAllocator(t)
	c := newTestCache(t, a, withPages(t, a, KVCacheConfig{Sequences: 2, MaxLen: 64, Heads: 1, HeadDim: 32, DType: F32, ChunkPages: 64}, 1))
	ctx := context.Background()
	per := int(c.page / c.tokenBytes) // tokens per page
	kv := make([]float32, per*32)
	require.NoError(t, c.Append(ctx, 0, kv, kv))
	injected := errors.New("injected bind failure")
	submitBinds = func(*vk.Device, []vk.SparseBind, []vk.TimelinePoint, vk.TimelinePoint) error { return injected }
	err := c.Append(ctx, 1, kv, kv)
	submitBinds = (*vk.Device).SubmitBinds
	require.ErrorIs(t, err, injected)
	st := c.Stats()
	require.Zero(t, st.SeqTokens[1])
	require.Zero(t, st.SeqPages[1])
	require.Equal(t, 2, st.QuarantinedPages)
	bad := map[pageRef]bool{}
	for _, p := range c.quarantine {
		bad[p] = true
	}
	for _, p := range c.pool.free {
		require.False(t, bad[p], "a quarantined page is free for reuse")
	}
	// Release and trim everything else: the quarantined pages' memory is kept.
	require.NoError(t, c.Release(0))
	c.Trim()
	st = c.Stats()
	require.Equal(t, 2, st.QuarantinedPages)
	require.GreaterOrEqual(t, st.MemoryBytes, 2*c.page)
	require.Equal(t, 1, st.Allocations, "the chunk of the quarantined pages is kept")
	for s := range 2 {
		require.NoError(t, c.Append(ctx, s, kv, kv))
		for _, p := range append(c.seqs[s].k, c.seqs[s].v...) {
			require.False(t, bad[p], "sequence %d was given a quarantined page", s)
		}
	}
	checkSequences(t, c, [][]float32{kv, kv}, [][]float32{kv, kv})
}

// TestKVCacheAppendUnlocked holds an Append's copy back on the device (behind binds that wait for
// a value only the test signals): meanwhile another sequence's Len, View and Stats return, and a
// Release of the sequence being written waits for the copy.
func TestKVCacheAppendUnlocked(t *testing.T) {
	a := newTestAllocator(t)
	c := newTestCache(t, a, KVCacheConfig{Sequences: 2, MaxLen: 64, Heads: 2, HeadDim: 16, DType: F32})
	r := rand.New(rand.NewPCG(25, 26))
	ctx := context.Background()
	per := 32
	k0, v0 := randomValues(r, 5*per), randomValues(r, 5*per)
	require.NoError(t, c.Append(ctx, 0, k0, v0))
	require.NoError(t, c.WaitBinds(ctx))
	c.mu.Lock()
	gate := c.last + 1
	c.last = gate
	c.mu.Unlock()
	appended := make(chan error, 1)
	k1, v1 := randomValues(r, 9*per), randomValues(r, 9*per)
	go func() { appended <- c.Append(ctx, 1, k1, v1) }()
	for deadline := time.Now().Add(10 * time.Second); ; {
		c.mu.Lock()
		writing := c.seqs[1].writing
		c.mu.Unlock()
		if writing {
			break
		}
		require.True(t, time.Now().Before(deadline), "the append did not start its copy")
		time.Sleep(time.Millisecond)
	}
	others := make(chan error, 1)
	go func() {
		_, _, err := c.View(0)
		if n := c.Len(0); err == nil && n != 5 {
			err = fmt.Errorf("Len(0) = %d", n)
		}
		c.Stats()
		others <- err
	}()
	select {
	case err := <-others:
		require.NoError(t, err)
	case <-time.After(5 * time.Second):
		t.Fatal("another sequence's View, Len and Stats waited for the append's copy")
	}
	released := make(chan error, 1)
	go func() { released <- c.Release(1) }()
	select {
	case err := <-appended:
		t.Fatalf("the append finished before its binds: %v", err)
	case err := <-released:
		t.Fatalf("Release ran under the append's copy: %v", err)
	case <-time.After(200 * time.Millisecond):
	}
	require.NoError(t, c.tl.Signal(gate))
	for _, ch := range []chan error{appended, released} {
		select {
		case err := <-ch:
			require.NoError(t, err)
		case <-time.After(20 * time.Second):
			t.Fatal("the append or the release did not finish once the binds were done")
		}
	}
	require.Zero(t, c.Len(1))
	checkSequences(t, c, [][]float32{k0, nil}, [][]float32{v0, nil})
	testenv.CheckValidation(t, a.dev.Instance())
}

// TestKVCacheReserveBatch reserves for several sequences at once: one bind batch for all of
// them, each backed for its tokens plus Headroom (Backed), nothing appended; a batch that fails
// (MaxLen) binds nothing and loses no page; a later append within the reserve binds nothing
// more. With Ahead, the pages past Tokens are taken where the pool has them: a budget too small
// for them is no error.
func TestKVCacheReserveBatch(t *testing.T) {
	a := newTestAllocator(t)
	const headroom = 5
	c := newTestCache(t, a, KVCacheConfig{Sequences: 3, MaxLen: 4000, Heads: 2, HeadDim: 16, DType: F32, Headroom: headroom})
	perPage := int(c.PageSize()) / (2 * 16 * 4)
	accounted := func(st KVCacheStats) {
		t.Helper()
		held := st.FreePages
		for _, n := range st.SeqPages {
			held += n
		}
		require.Equal(t, st.MemoryBytes/st.PageSize, uint64(held), "every page is free or bound")
	}
	batches := c.Stats().BindBatches
	require.NoError(t, c.ReserveBatch([]Reservation{{Seq: 0, Tokens: 3 * perPage}, {Seq: 2, Tokens: 1}}))
	st := c.Stats()
	require.Equal(t, batches+1, st.BindBatches, "one batch binds both sequences")
	require.Positive(t, st.BindSubmitTime, "the batch's submission is timed")
	require.Positive(t, st.AllocateTime, "the pages' memory was allocated")
	require.Equal(t, []int{0, 0, 0}, st.SeqTokens)
	require.Equal(t, 0, c.Backed(1))
	for seq, tokens := range map[int]int{0: 3 * perPage, 2: 1} {
		pages := (tokens + headroom + perPage - 1) / perPage
		require.Equal(t, 2*pages, st.SeqPages[seq], "sequence %d", seq)
		require.Equal(t, pages*perPage, c.Backed(seq), "sequence %d", seq)
	}
	require.Equal(t, 0, c.Backed(7), "out of range")
	accounted(st)

	err := c.ReserveBatch([]Reservation{{Seq: 1, Tokens: 1}, {Seq: 0, Tokens: 4001}})
	require.ErrorContains(t, err, "exceed MaxLen 4000")
	require.Equal(t, st.SeqPages, c.Stats().SeqPages, "a failed batch binds nothing")
	require.Equal(t, st.BindBatches, c.Stats().BindBatches)
	accounted(c.Stats())
	require.ErrorContains(t, c.ReserveBatch([]Reservation{{Seq: 1, Tokens: 1, Ahead: -1}}), "ahead must be >= 0")

	kv := make([]float32, 2*perPage*2*16)
	require.NoError(t, c.Append(context.Background(), 0, kv, kv))
	require.Equal(t, st.BindBatches, c.Stats().BindBatches, "the reserved pages hold the append")
	require.Equal(t, st.BindSubmitTime, c.Stats().BindSubmitTime, "nothing more was submitted")

	// 8 pages, K and V together: 4 a tensor.
	small := newTestCache(t, a, KVCacheConfig{Sequences: 2, MaxLen: 100 * perPage, Heads: 2, HeadDim: 16, DType: F32, MaxPages: 8})
	require.ErrorIs(t, small.Reserve(0, 10*perPage), vk.ErrOutOfDeviceMemory, "tokens are needed")
	require.NoError(t, small.ReserveBatch([]Reservation{{Seq: 0, Tokens: 1, Ahead: 10 * perPage}}), "ahead is best effort")
	require.Equal(t, 4*perPage, small.Backed(0), "as far as the budget allows")
	require.NoError(t, small.ReserveBatch([]Reservation{{Seq: 0, Tokens: 1, Ahead: 2 * perPage}}))
	require.Equal(t, 4*perPage, small.Backed(0), "backed already")
	accounted(small.Stats())
}

// TestKVCacheSyncBinds: with SyncBinds, every call that binds or unbinds returns with its batch
// done (the timeline at the last value submitted, views with nothing to wait for), and the
// sequences hold what was appended.
func TestKVCacheSyncBinds(t *testing.T) {
	a := newTestAllocator(t)
	c := newTestCache(t, a, KVCacheConfig{Sequences: 3, MaxLen: 300, Heads: 2, HeadDim: 16, DType: F32, Headroom: 20, SyncBinds: true})
	r := rand.New(rand.NewPCG(31, 32))
	per := c.cfg.Heads * c.cfg.HeadDim
	wantK, wantV := make([][]float32, 3), make([][]float32, 3)
	done := func(what string) {
		t.Helper()
		v, err := c.tl.Value()
		require.NoError(t, err)
		require.Equal(t, c.last, v, "%s: the last batch is done", what)
		require.Equal(t, uint64(c.Stats().BindBatches), v, "%s: one value per batch", what)
	}
	for n := 0; n < 300; n += 7 {
		for s := range 3 {
			m := min(7, 300-n)
			k, v := randomValues(r, m*per), randomValues(r, m*per)
			require.NoError(t, c.Append(context.Background(), s, k, v))
			wantK[s], wantV[s] = append(wantK[s], k...), append(wantV[s], v...)
			done(fmt.Sprintf("append to sequence %d at %d tokens", s, n))
			kt, vt, err := c.View(s)
			require.NoError(t, err)
			require.Empty(t, BindPoints(kt, vt), "sequence %d: bound before the append returned", s)
		}
	}
	require.Positive(t, c.Stats().BindBatches)
	checkSequences(t, c, wantK, wantV)
	checkCommitted(t, c)
	require.NoError(t, c.Release(1))
	done("release")
	require.NoError(t, c.Reserve(1, 100))
	done("reserve")
}

// TestKVCacheBoundPagesWaitForNothing holds a batch that binds pages ahead behind a timeline
// value the test signals: tokens on pages that an earlier batch bound, that batch being done,
// wait for nothing (a view's BindPoints, as an append's copy and a decode's kernels), while
// those on the held pages wait for the held batch.
func TestKVCacheBoundPagesWaitForNothing(t *testing.T) {
	a := newTestAllocator(t)
	probe := newTestCache(t, a, KVCacheConfig{Sequences: 1, MaxLen: 1, Heads: 1, HeadDim: 1, DType: F32})
	perPage := 4 // tokens per page of each tensor
	c := newTestCache(t, a, KVCacheConfig{Sequences: 1, MaxLen: 10 * perPage, Heads: 1, HeadDim: int(probe.PageSize()) / 4 / perPage, DType: F32})
	ctx := context.Background()
	r := rand.New(rand.NewPCG(33, 34))
	per := c.cfg.HeadDim
	k0, v0 := randomValues(r, perPage*per), randomValues(r, perPage*per)
	require.NoError(t, c.Append(ctx, 0, k0, v0)) // page 1
	require.NoError(t, c.Reserve(0, perPage))    // page 2
	require.NoError(t, c.WaitBinds(ctx))

	// The next batch waits for value last+1, which only the test signals.
	c.mu.Lock()
	gate := c.last + 1
	c.last = gate
	c.mu.Unlock()
	signalled := false
	defer func() {
		if !signalled {
			c.tl.Signal(gate) // let the held batch finish before the cache closes
		}
	}()
	require.NoError(t, c.Reserve(0, 4*perPage)) // 4 pages past the 1 of tokens held: pages 3 to 5, behind the gate
	points := func(tokens int) []vk.TimelinePoint {
		c.mu.Lock()
		c.seqs[0].len = tokens // the test's view of the pages (past page 1, tokens unwritten)
		c.mu.Unlock()
		kt, vt, err := c.View(0)
		require.NoError(t, err)
		return BindPoints(kt, vt)
	}
	require.Empty(t, points(perPage), "page 1 was bound by a batch that is done")
	require.Empty(t, points(2*perPage), "page 2 was bound by a batch that is done")
	p := points(2*perPage + 1)
	require.Len(t, p, 2, "page 3 is bound behind the gate, in K and V")
	require.Equal(t, []vk.TimelinePoint{{Timeline: c.tl, Value: gate + 1}, {Timeline: c.tl, Value: gate + 1}}, p)
	points(perPage)
	require.NoError(t, c.tl.Signal(gate))
	signalled = true
	require.NoError(t, c.WaitBinds(ctx))
	require.Empty(t, points(5*perPage), "every batch is done")
	points(perPage)
	k1, v1 := randomValues(r, 4*perPage*per), randomValues(r, 4*perPage*per) // onto pages 2 to 5
	require.NoError(t, c.Append(ctx, 0, k1, v1))
	checkSequences(t, c, [][]float32{append(k0, k1...)}, [][]float32{append(v0, v1...)})
	checkCommitted(t, c)
	testenv.CheckValidation(t, a.dev.Instance())
}

// waitSpare waits until the cache's refill has stopped (with SparePages free, or the budget
// spent) and returns its stats.
func waitSpare(t *testing.T, c *KVCache) KVCacheStats {
	t.Helper()
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(time.Millisecond) {
		c.mu.Lock()
		busy := c.refilling
		c.mu.Unlock()
		if !busy {
			return c.Stats()
		}
		if time.Now().After(deadline) {
			t.Fatal("the spare pages' allocation did not end")
		}
	}
}

// TestKVCacheSparePages: with SparePages, the pages a growth takes are allocated again beside
// the calls, so that the next growths allocate nothing themselves (AllocateTime and the
// allocations counted in the calls stay put); the spare pages are free memory beyond what is
// bound, never more than SparePages nor past MaxPages; the sequences hold what was appended;
// and a cache closed while it allocates spare pages closes cleanly.
func TestKVCacheSparePages(t *testing.T) {
	a := newTestAllocator(t)
	probe := newTestCache(t, a, KVCacheConfig{Sequences: 1, MaxLen: 1, Heads: 1, HeadDim: 1, DType: F32})
	perPage := 4 // tokens per page of each tensor
	cfg := KVCacheConfig{Sequences: 3, MaxLen: 40 * perPage, Heads: 1, HeadDim: int(probe.PageSize()) / 4 / perPage, DType: F32,
		Headroom: 2 * perPage, ChunkPages: 2, SparePages: 13}
	c := newTestCache(t, a, cfg)
	r := rand.New(rand.NewPCG(35, 36))
	ctx := context.Background()
	per := cfg.HeadDim
	wantK, wantV := make([][]float32, 3), make([][]float32, 3)
	appendAll := func(n int) {
		for s := range 3 {
			k, v := randomValues(r, n*per), randomValues(r, n*per)
			require.NoError(t, c.Append(ctx, s, k, v))
			wantK[s], wantV[s] = append(wantK[s], k...), append(wantV[s], v...)
		}
	}
	appendAll(1) // the first growth allocates its pages itself
	st := waitSpare(t, c)
	require.Equal(t, 13, st.FreePages, "spare pages allocated to SparePages, in chunks of 2 but the last")
	require.Positive(t, st.SpareAllocateTime)
	allocated := st.AllocateTime
	checkCommitted(t, c)
	// A growth takes 2 pages of each tensor at most, so one append to each sequence takes 12
	// pages at most: fewer than are spare.
	for n := 1; n < 24; n++ {
		appendAll(1)
		st := waitSpare(t, c)
		require.Equal(t, allocated, st.AllocateTime, "token %d: a growth allocated memory itself", n+1)
		require.Equal(t, 13, st.FreePages, "token %d: the spare pages are free again", n+1)
		checkCommitted(t, c)
	}
	require.Greater(t, c.Stats().BindBatches, 6, "the sequences grew several times")
	checkSequences(t, c, wantK, wantV)
	testenv.CheckValidation(t, a.dev.Instance())

	// MaxPages bounds the spare pages with the bound ones.
	b := newTestCache(t, a, KVCacheConfig{Sequences: 1, MaxLen: 40 * perPage, Heads: 1, HeadDim: cfg.HeadDim, DType: F32,
		ChunkPages: 2, SparePages: 100, MaxPages: 9})
	require.NoError(t, b.Append(ctx, 0, randomValues(r, perPage*per), randomValues(r, perPage*per)))
	st = waitSpare(t, b)
	require.Equal(t, 2, st.SeqPages[0])
	require.Equal(t, 7, st.FreePages, "the budget of 9 pages, less the 2 bound")
	require.Equal(t, 9*st.PageSize, st.MemoryBytes)

	// Closed while allocating: the allocations end, the cache's memory is freed.
	for i := range 5 {
		d := newTestCache(t, a, KVCacheConfig{Sequences: 1, MaxLen: 40 * perPage, Heads: 1, HeadDim: cfg.HeadDim, DType: F32,
			ChunkPages: 1, SparePages: 60})
		require.NoError(t, d.Append(ctx, 0, randomValues(r, perPage*per), randomValues(r, perPage*per)))
		if i > 0 {
			time.Sleep(time.Duration(i) * time.Millisecond)
		}
		d.Close()
		d.mu.Lock()
		held := d.pool.held
		d.mu.Unlock()
		require.Zero(t, held, "close %d: pages left allocated", i)
	}
	testenv.CheckValidation(t, a.dev.Instance())
}

// TestKVCacheSparePagesKeepTheBudget grows one sequence while spare pages of another growth are
// being allocated: the chunk in flight counts against MaxPages, so the cache never holds more.
func TestKVCacheSparePagesKeepTheBudget(t *testing.T) {
	a := newTestAllocator(t)
	probe := newTestCache(t, a, KVCacheConfig{Sequences: 1, MaxLen: 1, Heads: 1, HeadDim: 1, DType: F32})
	perPage := int(probe.PageSize()) / 4
	for i := range 300 {
		c, err := NewKVCache(a, KVCacheConfig{Sequences: 2, MaxLen: 32 * perPage, Heads: 1, HeadDim: 1, DType: F32,
			ChunkPages: 32, SparePages: 1000, MaxPages: 64})
		require.NoError(t, err)
		require.NoError(t, c.Reserve(0, perPage))
		err = c.Reserve(1, 16*perPage)
		if err != nil {
			require.ErrorIs(t, err, vk.ErrOutOfDeviceMemory, "run %d", i)
		}
		st := waitSpare(t, c)
		require.LessOrEqual(t, st.MemoryBytes, 64*st.PageSize, "run %d: more pages held than MaxPages", i)
		c.Close()
	}
}
