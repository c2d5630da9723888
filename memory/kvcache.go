package memory

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/vkattn/vkattn/vk"
)

// KVCacheConfig describes a KVCache.
type KVCacheConfig struct {
	Sequences int // sequences held at once (slots 0 .. Sequences-1)
	MaxLen    int // tokens per sequence at most
	Heads     int // KV heads (Hk)
	// HeadDim is the head dim (d): positive, and even for F16 and BF16, whose values kernels
	// read in pairs (32-bit words), unless Unpaired. Which head dims the attention kernels take is checked by the
	// attention calls, not here (memory does not know them).
	HeadDim int
	DType   DType // F32, F16 or BF16
	// Headroom is how many tokens beyond its need a sequence gets pages for, so that the next
	// appends find their pages bound: when a sequence grows past its pages, or has less than half
	// of the headroom's pages left ahead of it, pages up to its tokens plus Headroom are bound,
	// without waiting. With 0, each growth binds what it needs.
	Headroom int
	// ChunkPages is the number of pages in each device memory allocation that pages are taken
	// from (in the paged layout, the least its buffers grow by); 0 means DefaultChunkBytes'
	// worth.
	ChunkPages int
	// MaxPages bounds the pages the cache holds, K and V together, bound or free for reuse (in
	// the paged layout, those of its current buffers): past it, growing fails with
	// vk.ErrOutOfDeviceMemory as if the device had no more memory. 0 means no bound but the
	// device's memory.
	MaxPages int
	// SparePages is the number of pages (K and V together) the sparse layout keeps allocated
	// and free for growth: after each append or Reserve, a goroutine allocates chunks until so
	// many pages are free, so that growths bind pages already allocated instead of waiting for
	// vkAllocateMemory (a growth of many sequences at once takes many chunks). They are device
	// memory beyond the pages bound (MemoryBytes), within MaxPages; Trim frees them until the
	// next append or Reserve. 0: pages are allocated when a growth needs them. The paged
	// layout, whose buffers grow by copying, ignores it.
	SparePages int
	// SyncBinds makes each batch of binds finish before the call that submitted it returns (a
	// wait on the host, usually a fraction of a millisecond on an idle device), so that binds
	// never run beside the kernels that follow: for drivers on which they slow each other down.
	// Off, binds run ahead of need without anyone waiting for them.
	SyncBinds bool
	// Paged forces the paged layout (pages in ordinary buffers, found through block tables),
	// which devices without sparse residency buffers get anyway.
	Paged bool
	// PageTokens is the tokens per page of the paged layout (at most MaxLen; Config reports the
	// one used); 0 means DefaultPageTokens. The sparse layout's pages are the sparse buffers'
	// alignment instead.
	PageTokens int
	// Unpaired allows an odd HeadDim for F16 and BF16: the cache holds 16-bit values that no
	// kernel reads in pairs as float K or V, but one by one, such as the bf16 scales of
	// attention.QuantizedKVCache (one per token and head for quant.Int8). Copies (Append,
	// AppendTensors) move bytes, and views start on a page or a token, so nothing else changes;
	// attention's float K/V kernels refuse odd head dims themselves.
	Unpaired bool
}

// DefaultChunkBytes is the size of the device memory allocations a KVCache takes its pages
// from, unless KVCacheConfig.ChunkPages says otherwise.
const DefaultChunkBytes = 2 << 20

// KVCache holds the keys and values of up to Sequences sequences of up to MaxLen tokens. Where
// the device has sparse residency buffers and timeline semaphores it does so in the way of
// vAttention: K and V are each a sparse-residency buffer (several where one would exceed
// maxStorageBufferRange) in which every sequence has a contiguous region of MaxLen tokens, laid
// out [MaxLen, Heads, HeadDim] and starting on a page and on a token, so that kernels read a
// sequence's K and V as dense tensors (View), or many sequences at once by their first tokens in
// a buffer (Batch, for attention.Engine.DecodeCache). Physical pages, the buffers' alignment in size, are bound to a
// sequence's region with vkQueueBindSparse as it grows (Append, Reserve) and unbound when it ends
// (Release); unbound pages return to a free list and are reused. AppendTensorsBatch appends to
// many sequences in one submission. Only what the sequences hold is
// committed: at most their tokens plus Headroom, rounded up to a page, per sequence and tensor.
//
// Binds are submitted without waiting for them, on the device's binding queue (a queue of its
// own where the device has one, vk.Device.BindQueue), each batch signalling the next value of
// the cache's timeline semaphore. The submissions that write or read newly bound pages wait for
// that value on the device (the appends' copies, and kernels through BindPoints or KVGroup.After),
// never the host; with Headroom, pages are bound ahead of need, so a decode step normally finds
// them bound long before. With KVCacheConfig.SyncBinds the host waits for each batch instead.
//
// Elsewhere, or with KVCacheConfig.Paged, it has the paged layout: pages of PageTokens tokens
// in ordinary device buffers, one for K and one for V (page i at the same place in both), and
// per sequence a block table of its pages in order. The buffers grow by ChunkPages pages at least
// (half their size at least), into larger ones that the pages are copied to; the old ones stay
// until Trim, for the views made before, which Trim closes. A view then carries the block table
// (Tensor.Pages) and the kernels find K and V rows through it; Batch is one group whose table
// joins the sequences'. Nothing is bound, so there is no timeline and no wait, and all pages of
// one tensor fit maxStorageBufferRange (the kernels bind a whole buffer). The API, errors and
// commit bound are the same; PageSize is a page's bytes.
//
// Its methods are safe for concurrent use; an append holds the cache's lock only for its
// bookkeeping, not across its copy, so other sequences' calls do not wait for it. A sequence must
// not be appended to or released while a kernel reads it. Close, or the allocator's Close,
// releases everything.
type KVCache struct {
	a          *Allocator
	dev        *vk.Device
	cfg        KVCacheConfig
	page       uint64 // bytes of one page: the sparse buffers' alignment
	tokenBytes uint64 // bytes of one token in one tensor: Heads * HeadDim * dtype size
	seqPages   int    // pages of one sequence's region
	perBuffer  int    // sequences per buffer
	k, v       []*Buffer
	tl         *vk.Timeline // signalled by each batch of binds with the next value (sparse layout)
	paged      *pagedPool   // the paged layout's pages; nil for the sparse layout
	// gens are the sequences' generations, advanced by Release: a view made in an earlier one is
	// closed (Tensor.Closed).
	gens []atomic.Uint64

	mu      sync.Mutex // guards what follows; see Allocator.busy for the lock order
	written sync.Cond  // on mu: broadcast when a sequence's write ends (kvSeq.writing)
	pool    pagePool   // the sparse layout's pages
	seqs    []kvSeq
	last    uint64 // the value the last batch submitted signals; 0 before the first
	reached uint64 // a value the timeline is known to have reached
	batches int    // batches submitted
	// submitTime is the host time the batches' submissions took.
	submitTime time.Duration
	refilling  bool // refill is running
	// quarantine holds pages whose binding is unknown: a batch binding them failed, and the
	// driver may have bound some of them. They are neither reused nor freed (Trim) until Close,
	// which destroys the buffers first.
	quarantine []pageRef
	closed     bool
}

type kvSeq struct {
	len int // tokens held
	// writing is set while an append copies into the sequence without c.mu, and while an
	// Extension of it is outstanding; appends, Reserve, Release and Truncate of the sequence wait
	// for it (c.written), appends before taking the allocator's busy lock.
	writing bool
	k, v    []pageRef // pages bound to the region, in order from its start
	pages   []uint32  // paged layout: its block table, the pool's pages of its tokens in order
	// marks say when the pages were bound: the first pages of the region are bound once value
	// is reached, in increasing order of both; of the marks known reached, all but the last
	// (which says how many pages those batches bound) are dropped.
	marks []bindMark
}

type bindMark struct {
	pages int
	value uint64
}

// KVCacheStats describe a KVCache's memory. Every byte and page count is of K and V together
// (K and V each hold half of what a sequence has bound and needs). In the paged layout, "bound"
// means in a sequence's block table, MemoryBytes and Allocations also count the buffers the pages
// moved out of, until Trim, and BindBatches and BindSubmitTime are 0.
type KVCacheStats struct {
	PageSize       uint64
	NeededBytes    uint64 // 2 (K and V) * tokens held * Heads * HeadDim * dtype size, over all sequences
	CommittedBytes uint64 // pages bound to the sequences, K and V together, * PageSize
	SeqTokens      []int  // tokens held by each sequence
	SeqPages       []int  // pages bound to each sequence's regions, K and V together
	FreePages      int    // pages held, bound to nothing, kept for reuse
	MemoryBytes    uint64 // device memory held for pages, free pages included
	Allocations    int    // device memory allocations the pages come from
	BindBatches    int    // vkQueueBindSparse batches submitted (binds and unbinds), one timeline value each
	// BindSubmitTime is the host time spent submitting those batches (vk.Device.SubmitBinds:
	// vkQueueBindSparse, and the wait for the binding queue, the compute queue where binds share
	// it), and AllocateTime the host time spent allocating device memory for pages
	// (vkAllocateMemory): what growing costs the calls that grow, beside the device's work.
	// SpareAllocateTime is the time spent allocating spare pages (KVCacheConfig.SparePages)
	// beside the calls.
	BindSubmitTime, AllocateTime, SpareAllocateTime time.Duration
	// QuarantinedPages are pages of failed binds, which the device may have bound: held (in
	// MemoryBytes) but never reused or freed before Close.
	QuarantinedPages int
}

// sparseResidency reports whether a device can back the cache (a variable for tests).
var sparseResidency = (*vk.Device).SparseResidency

// submitBinds submits a batch of binds (a variable for tests, which make it fail).
var submitBinds = (*vk.Device).SubmitBinds

// NewKVCache reserves the address space of a cache on the allocator's device; it commits no
// memory. An error names the configuration field at fault, or the device limit a size exceeds
// (maxStorageBufferRange for one sequence, sparseAddressSpaceSize for all of them).
func NewKVCache(a *Allocator, cfg KVCacheConfig) (*KVCache, error) {
	if a == nil {
		return nil, fmt.Errorf("memory: kv cache: nil allocator")
	}
	for _, f := range []struct {
		name string
		v    int
		min  int
	}{{"Sequences", cfg.Sequences, 1}, {"MaxLen", cfg.MaxLen, 1}, {"Heads", cfg.Heads, 1}, {"HeadDim", cfg.HeadDim, 1},
		{"Headroom", cfg.Headroom, 0}, {"ChunkPages", cfg.ChunkPages, 0}, {"MaxPages", cfg.MaxPages, 0}, {"SparePages", cfg.SparePages, 0},
		{"PageTokens", cfg.PageTokens, 0}} {
		if f.v < f.min {
			return nil, fmt.Errorf("memory: KVCacheConfig.%s must be >= %d, got %d", f.name, f.min, f.v)
		}
	}
	if cfg.DType < F32 || cfg.DType > BF16 {
		return nil, fmt.Errorf("memory: KVCacheConfig.DType: invalid dtype %d", int(cfg.DType))
	}
	if cfg.DType.Size() == 2 && cfg.HeadDim%2 != 0 && !cfg.Unpaired {
		return nil, fmt.Errorf("memory: KVCacheConfig.HeadDim must be even for %s (kernels read 16-bit values in pairs), got %d", cfg.DType, cfg.HeadDim)
	}
	dev := a.dev
	info := dev.Info()
	limit := uint64(info.MaxStorageBufferRange)
	dsize := uint64(cfg.DType.Size())
	if uint64(cfg.Heads) > limit/dsize/uint64(cfg.HeadDim) || uint64(cfg.MaxLen) > limit/(uint64(cfg.Heads)*uint64(cfg.HeadDim)*dsize) {
		return nil, fmt.Errorf("memory: kv cache: a sequence of MaxLen %d tokens x %d heads x %d dims %s is over the device's maxStorageBufferRange of %d bytes",
			cfg.MaxLen, cfg.Heads, cfg.HeadDim, cfg.DType, limit)
	}
	c := &KVCache{a: a, dev: dev, cfg: cfg, tokenBytes: uint64(cfg.Heads) * uint64(cfg.HeadDim) * dsize}
	if cfg.Paged || sparseResidency(dev) != nil || dev.TimelineSemaphores() != nil {
		return c.openPaged(limit)
	}
	probe, err := dev.NewSparseBuffer(1)
	if err != nil {
		return nil, fmt.Errorf("memory: kv cache: %w", err)
	}
	_, c.page, _ = probe.Requirements()
	probe.Close()
	if c.page == 0 || c.page%4 != 0 {
		return nil, fmt.Errorf("memory: kv cache: unexpected sparse page size %d", c.page)
	}
	// A region starts on a page (binds) and on a token (kernels address a sequence by its first
	// token, Batch): its size is a multiple of both.
	unit := c.page / gcd(c.page, c.tokenBytes) * c.tokenBytes
	seqBytes := (uint64(cfg.MaxLen)*c.tokenBytes + unit - 1) / unit * unit
	if seqBytes > limit {
		return nil, fmt.Errorf("memory: kv cache: a sequence of MaxLen %d tokens takes %d bytes in pages of %d, over the device's maxStorageBufferRange of %d",
			cfg.MaxLen, seqBytes, c.page, limit)
	}
	c.seqPages = int(seqBytes / c.page)
	c.perBuffer = int(min(limit/seqBytes, uint64(cfg.Sequences)))
	if space := info.SparseAddressSpaceSize; space > 0 && uint64(cfg.Sequences) > space/2/seqBytes {
		return nil, fmt.Errorf("memory: kv cache: K and V for %d sequences of %d bytes exceed the device's sparseAddressSpaceSize of %d bytes",
			cfg.Sequences, seqBytes, space)
	}
	bits := ^uint32(0)
	for first := 0; first < cfg.Sequences; first += c.perBuffer {
		n := min(c.perBuffer, cfg.Sequences-first)
		for _, list := range []*[]*Buffer{&c.k, &c.v} {
			vb, err := dev.NewSparseBuffer(uint64(n) * seqBytes)
			if err != nil {
				c.closeBuffers()
				return nil, fmt.Errorf("memory: kv cache: %w", err)
			}
			*list = append(*list, &Buffer{Buffer: vb, alloc: a, size: vb.Size(), cache: c})
			_, align, b := vb.Requirements()
			bits &= b
			if align != c.page {
				c.closeBuffers()
				return nil, fmt.Errorf("memory: kv cache: sparse buffers of %d and 1 bytes have pages of %d and %d bytes", vb.Size(), align, c.page)
			}
		}
	}
	typ, err := a.chooseType(bits, DeviceLocal)
	if err != nil {
		c.closeBuffers()
		return nil, fmt.Errorf("memory: kv cache: %w", err)
	}
	if c.tl, err = dev.NewTimeline(0); err != nil {
		c.closeBuffers()
		return nil, fmt.Errorf("memory: kv cache: %w", err)
	}
	chunk := cfg.ChunkPages
	if chunk == 0 {
		chunk = int(max(1, DefaultChunkBytes/c.page))
	}
	c.pool = pagePool{dev: dev, typ: typ, page: c.page, chunkPages: chunk, maxPages: cfg.MaxPages}
	return c.open()
}

// openPaged completes NewKVCache for the paged layout; limit is maxStorageBufferRange. The
// pool's buffers are bound whole by kernels and each has one allocation of its own, so they stop
// at the smaller of maxStorageBufferRange and maxMemoryAllocationSize.
func (c *KVCache) openPaged(limit uint64) (*KVCache, error) {
	pt := c.cfg.PageTokens
	if pt == 0 {
		pt = DefaultPageTokens
	}
	pt = min(pt, c.cfg.MaxLen)
	c.page = uint64(pt) * c.tokenBytes
	limitName := "maxStorageBufferRange"
	if m := c.dev.Info().MaxMemoryAllocationSize; m > 0 && m < limit {
		limit, limitName = m, "maxMemoryAllocationSize"
	}
	if c.page > limit {
		return nil, fmt.Errorf("memory: kv cache: a page of %d tokens takes %d bytes, over the device's %s of %d", pt, c.page, limitName, limit)
	}
	c.cfg.PageTokens = pt
	c.perBuffer = c.cfg.Sequences
	chunk := c.cfg.ChunkPages
	if chunk == 0 {
		chunk = int(max(1, DefaultChunkBytes/c.page))
	}
	c.paged = &pagedPool{a: c.a, cache: c, page: c.page, chunkPages: chunk, maxPages: int(limit / c.page), limitName: limitName}
	if c.cfg.MaxPages > 0 && c.cfg.MaxPages/2 < c.paged.maxPages {
		c.paged.maxPages, c.paged.budget = c.cfg.MaxPages/2, true
	}
	return c.open()
}

// open completes NewKVCache: the cache is listed by its allocator.
func (c *KVCache) open() (*KVCache, error) {
	c.seqs = make([]kvSeq, c.cfg.Sequences)
	c.written.L = &c.mu
	c.gens = make([]atomic.Uint64, c.cfg.Sequences)
	a := c.a
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.closed {
		c.closeBuffers()
		c.tl.Close()
		return nil, ErrClosed
	}
	a.caches[c] = struct{}{}
	return c, nil
}

func gcd(a, b uint64) uint64 {
	for b != 0 {
		a, b = b, a%b
	}
	return a
}

func (c *KVCache) closeBuffers() {
	for _, b := range append(c.k, c.v...) {
		b.closed.Store(true)
		b.Buffer.Close()
	}
	if c.paged != nil {
		c.paged.close()
	}
}

// Config is the configuration the cache was made with.
func (c *KVCache) Config() KVCacheConfig { return c.cfg }

// PageSize is the size in bytes of the pages the cache commits, per tensor: the sparse buffers'
// alignment, or PageTokens tokens in the paged layout.
func (c *KVCache) PageSize() uint64 { return c.page }

// Paged reports whether the cache has the paged layout (KVCacheConfig.Paged, or a device
// without sparse residency buffers).
func (c *KVCache) Paged() bool { return c.paged != nil }

// region returns the buffers of sequence seq and the byte offset of its region in them.
func (c *KVCache) region(seq int) (k, v *Buffer, off uint64) {
	i := seq / c.perBuffer
	return c.k[i], c.v[i], uint64(seq%c.perBuffer) * uint64(c.seqPages) * c.page
}

// check checks seq and that the cache is open; c.mu is held.
func (c *KVCache) check(seq int) error {
	if c.closed {
		return ErrClosed
	}
	if seq < 0 || seq >= c.cfg.Sequences {
		return fmt.Errorf("memory: kv cache: sequence %d out of range [0, %d)", seq, c.cfg.Sequences)
	}
	return nil
}

// Len is the number of tokens sequence seq holds (0 for a bad seq or a closed cache).
func (c *KVCache) Len(seq int) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.check(seq) != nil {
		return 0
	}
	return c.seqs[seq].len
}

// fits checks that n more tokens fit sequence seq; c.mu is held.
func (c *KVCache) fits(seq, n int) error {
	if have := c.seqs[seq].len; n > c.cfg.MaxLen-have {
		return fmt.Errorf("memory: kv cache: sequence %d holds %d tokens; %d more exceed MaxLen %d", seq, have, n, c.cfg.MaxLen)
	}
	return nil
}

// Append appends n tokens to sequence seq: k and v hold n*Heads*HeadDim values each, laid out
// [n, Heads, HeadDim], converted to the cache's dtype. Pages are committed first, so a failure
// to get them (an error wrapping vk.ErrOutOfDeviceMemory) leaves the sequence as it was.
func (c *KVCache) Append(ctx context.Context, seq int, k, v []float32) error {
	per := c.cfg.Heads * c.cfg.HeadDim
	switch {
	case len(k) != len(v):
		return fmt.Errorf("memory: kv cache: append to sequence %d: k has %d values, v %d", seq, len(k), len(v))
	case len(k) == 0 || len(k)%per != 0:
		return fmt.Errorf("memory: kv cache: append to sequence %d: k and v have %d values, want a positive multiple of Heads*HeadDim = %d",
			seq, len(k), per)
	}
	n := len(k) / per
	return c.append(ctx, []appendItem{{seq: seq, n: n}}, func(dsts [][]appendDst, after []vk.TimelinePoint) error {
		kb, vb := encode(c.cfg.DType, k), encode(c.cfg.DType, v)
		var ups []upload
		src := uint64(0)
		for _, d := range dsts[0] {
			ups = append(ups, upload{d.k, d.off, kb[src : src+d.n]}, upload{d.v, d.off, vb[src : src+d.n]})
			src += d.n
		}
		return c.upload(ctx, after, ups)
	})
}

// upload is a host-to-buffer copy of an Append.
type upload struct {
	dst  *Buffer
	off  uint64
	data []byte
}

// upload copies the uploads through the allocator's staging buffer, as many as it holds in each
// submission, which first waits for after. The caller holds a.busy (shared).
func (c *KVCache) upload(ctx context.Context, after []vk.TimelinePoint, ups []upload) error {
	a := c.a
	total := uint64(0)
	for _, u := range ups {
		if err := a.checkTransfer(u.dst, u.off, len(u.data)); err != nil {
			return err
		}
		total += uint64(len(u.data))
	}
	a.xfer.Lock()
	defer a.xfer.Unlock()
	st, err := a.stagingBuffer(total)
	if err != nil {
		return err
	}
	type op struct {
		src, n uint64
		dst    *Buffer
		off    uint64
	}
	var ops []op
	used := uint64(0)
	flush := func() error {
		if len(ops) == 0 {
			return nil
		}
		err := a.dev.Run(ctx, func(cmd *vk.Commands) error {
			cmd.After(after...)
			for _, o := range ops {
				cmd.Copy(st.Buffer, o.src, o.dst.Buffer, o.off, o.n)
			}
			return nil
		})
		ops, used = ops[:0], 0
		return err
	}
	room := st.Size()
	for _, u := range ups {
		for done := uint64(0); done < uint64(len(u.data)); {
			if used == room {
				if err := flush(); err != nil {
					return err
				}
			}
			n := min(room-used, uint64(len(u.data))-done)
			copy(st.Bytes()[used:], u.data[done:done+n])
			ops = append(ops, op{src: used, n: n, dst: u.dst, off: u.off + done})
			used += n
			done += n
		}
	}
	return flush()
}

// AppendTensors appends the tokens of device tensors k and v to sequence seq: both contiguous,
// of the cache's dtype and allocator, shaped [n, Heads, HeadDim] or [1, n, Heads, HeadDim]. The
// copy is one submission on the device.
func (c *KVCache) AppendTensors(ctx context.Context, seq int, k, v *Tensor) error {
	return c.AppendTensorsBatch(ctx, []TensorAppend{{Seq: seq, K: k, V: v}})
}

// TensorAppend is one sequence's part of AppendTensorsBatch.
type TensorAppend struct {
	Seq  int
	K, V *Tensor
}

// AppendTensorsBatch is AppendTensors to several distinct sequences at once: all the copies are
// one submission. Either every sequence gets its tokens or, on error, none does.
func (c *KVCache) AppendTensorsBatch(ctx context.Context, appends []TensorAppend) error {
	items := make([]appendItem, len(appends))
	for i, ap := range appends {
		n, err := c.checkAppendTensors(ap.Seq, ap.K, ap.V)
		if err != nil {
			return err
		}
		items[i] = appendItem{seq: ap.Seq, n: n}
	}
	dsize := uint64(c.cfg.DType.Size())
	return c.append(ctx, items, func(dsts [][]appendDst, after []vk.TimelinePoint) error {
		for _, ap := range appends {
			if ap.K.Closed() || ap.V.Closed() {
				return ErrClosed
			}
			for _, t := range []*Tensor{ap.K, ap.V} { // the sources may be views of this cache
				if t.buf.cache == c {
					c.mu.Lock()
					p, ok := c.tensorPoint(t)
					c.mu.Unlock()
					if ok {
						after = append(after, p)
					}
				}
			}
		}
		return c.dev.Run(ctx, func(cmd *vk.Commands) error {
			cmd.After(after...)
			for i, ap := range appends {
				src := uint64(0)
				for _, d := range dsts[i] {
					cmd.Copy(ap.K.buf.Buffer, uint64(ap.K.Offset)*dsize+src, d.k.Buffer, d.off, d.n)
					cmd.Copy(ap.V.buf.Buffer, uint64(ap.V.Offset)*dsize+src, d.v.Buffer, d.off, d.n)
					src += d.n
				}
			}
			cmd.Barrier()
			return nil
		})
	})
}

// Extend is one sequence's part of KVCache.Extend: Tokens more tokens of sequence Seq, with pages
// for Ahead more as Reservation.Ahead takes them.
type Extend struct {
	Seq, Tokens, Ahead int
}

// Extension is tokens being appended in place to sequences of a KVCache (KVCache.Extend): the
// caller writes them on the device through K and V, then calls Commit, from which on the
// sequences hold them, or Abort, which gives their new pages back. Until then the sequences are
// being written: Release, Truncate, appends and Reserve of them wait.
type Extension struct {
	// K and V are, per Extend, views of its new tokens, [1, Tokens, Heads, HeadDim], for the
	// writer only: they must not be used after Commit or Abort.
	K, V []*Tensor
	// After are the binds a submission writing K and V must wait for (memory.BindPoints of the
	// views gives them too).
	After []vk.TimelinePoint

	c     *KVCache
	items []appendItem
	had   []int
	done  bool
}

// Extend takes the pages of tokens to append in place to several distinct sequences of a cache in
// the sparse layout, as AppendTensorsBatch does (one batch of binds, all or none), and returns
// them to be written (Extension). The caller must Commit or Abort it, and not close the cache or
// its allocator before; nothing the cache does meanwhile waits for the device. A paged cache's new
// tokens are not one view each: Extend refuses it (Paged).
func (c *KVCache) Extend(ctx context.Context, extends []Extend) (*Extension, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if c.paged != nil {
		return nil, fmt.Errorf("memory: kv cache: Extend writes in place, which the paged layout's pages do not allow")
	}
	items := make([]appendItem, len(extends))
	for i, x := range extends {
		if x.Tokens <= 0 || x.Ahead < 0 {
			return nil, fmt.Errorf("memory: kv cache: append to sequence %d: tokens must be > 0 and ahead >= 0, got %d and %d", x.Seq, x.Tokens, x.Ahead)
		}
		items[i] = appendItem{seq: x.Seq, n: x.Tokens, ahead: x.Ahead}
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if err := c.idleAll(items); err != nil {
		return nil, err
	}
	x := &Extension{c: c, items: items, had: make([]int, len(items)), K: make([]*Tensor, len(items)), V: make([]*Tensor, len(items))}
	for i, it := range items {
		x.had[i] = c.held(it.seq)
	}
	if err := c.growAll(items); err != nil {
		return nil, err
	}
	dsize := uint64(c.cfg.DType.Size())
	for i, it := range items {
		s := &c.seqs[it.seq]
		if p, ok := c.point(it.seq, c.pagesFor(s.len+it.n)); ok {
			x.After = append(x.After, p)
		}
		d := c.dests(it.seq, s.len, it.n)[0] // the sparse layout: one run
		shape := []int{1, it.n, c.cfg.Heads, c.cfg.HeadDim}
		view := func(b *Buffer) *Tensor {
			return &Tensor{DType: c.cfg.DType, Shape: shape, Strides: contiguous(shape), Offset: int(d.off / dsize), buf: b, owner: c.a,
				gen: &c.gens[it.seq], genAt: c.gens[it.seq].Load()}
		}
		x.K[i], x.V[i] = view(d.k), view(d.v)
		s.writing = true
	}
	return x, nil
}

// Commit ends an extension whose tokens were written: the sequences hold them. Commit or Abort
// after either, or on a closed cache, does nothing.
func (x *Extension) Commit() { x.end(true) }

// Abort ends an extension whose tokens were not (all) written: the pages it took go back (an
// unbind that fails leaves them bound, as an append's undo does), and the sequences are as they
// were.
func (x *Extension) Abort() { x.end(false) }

func (x *Extension) end(commit bool) {
	c := x.c
	c.mu.Lock()
	defer c.mu.Unlock()
	defer c.written.Broadcast()
	if x.done || c.closed {
		return
	}
	x.done = true
	for i, it := range x.items {
		c.seqs[it.seq].writing = false
		if commit {
			c.seqs[it.seq].len += it.n
		} else if c.held(it.seq) > x.had[i] {
			c.shrink(it.seq, x.had[i]) // an error here leaves the pages bound, as an append's undo
		}
	}
}

// checkAppendTensors checks the tensors of an append to seq and returns their tokens.
func (c *KVCache) checkAppendTensors(seq int, k, v *Tensor) (int, error) {
	n := 0
	for _, a := range []struct {
		name string
		t    *Tensor
	}{{"k", k}, {"v", v}} {
		t := a.t
		switch {
		case t == nil:
			return 0, fmt.Errorf("memory: kv cache: append to sequence %d: %s is nil", seq, a.name)
		case t.owner != c.a:
			return 0, fmt.Errorf("memory: kv cache: append to sequence %d: %s: %w", seq, a.name, ErrForeign)
		case t.Closed():
			return 0, fmt.Errorf("memory: kv cache: append to sequence %d: %s: %w", seq, a.name, ErrClosed)
		case t.DType != c.cfg.DType:
			return 0, fmt.Errorf("memory: kv cache: append to sequence %d: %s is %s, the cache %s", seq, a.name, t.DType, c.cfg.DType)
		case !t.Contiguous():
			return 0, fmt.Errorf("memory: kv cache: append to sequence %d: %s is not contiguous", seq, a.name)
		case t.pages != nil:
			return 0, fmt.Errorf("memory: kv cache: append to sequence %d: %s is paged (a paged KV cache's view)", seq, a.name)
		}
		sh := t.Shape
		ok := len(sh) == 3 || len(sh) == 4 && sh[0] == 1
		if ok && (sh[len(sh)-2] != c.cfg.Heads || sh[len(sh)-1] != c.cfg.HeadDim) {
			ok = false
		}
		if !ok {
			return 0, fmt.Errorf("memory: kv cache: append to sequence %d: %s has shape %v, want [n, %d, %d] or [1, n, %d, %d]",
				seq, a.name, sh, c.cfg.Heads, c.cfg.HeadDim, c.cfg.Heads, c.cfg.HeadDim)
		}
		tokens := sh[len(sh)-3]
		if a.name == "v" && tokens != n {
			return 0, fmt.Errorf("memory: kv cache: append to sequence %d: k has %d tokens, v %d", seq, n, tokens)
		}
		n = tokens
	}
	return n, nil
}

// appendItem is n tokens appended to (or reserved for) sequence seq, ahead as Reservation.Ahead;
// appendDst is a run of bytes where they go: K's and V's buffers, the offset there and the run's
// length, the runs in token order.
type appendItem struct{ seq, n, ahead int }

type appendDst struct {
	k, v   *Buffer
	off, n uint64
}

// dests are the runs of tokens [first, first+n) of sequence seq, whose pages are bound or
// taken. c.mu is held.
func (c *KVCache) dests(seq, first, n int) []appendDst {
	if c.paged == nil {
		kb, vb, off := c.region(seq)
		return []appendDst{{kb, vb, off + uint64(first)*c.tokenBytes, uint64(n) * c.tokenBytes}}
	}
	pt, pages := c.cfg.PageTokens, c.seqs[seq].pages
	var out []appendDst
	for t := first; t < first+n; {
		m := min(pt-t%pt, first+n-t)
		off := (uint64(pages[t/pt])*uint64(pt) + uint64(t%pt)) * c.tokenBytes
		if k := len(out) - 1; k >= 0 && out[k].off+out[k].n == off {
			out[k].n += uint64(m) * c.tokenBytes
		} else {
			out = append(out, appendDst{c.paged.k, c.paged.v, off, uint64(m) * c.tokenBytes})
		}
		t += m
	}
	return out
}

// append commits pages for the items' tokens, writes them with write (given where each item's
// tokens go and the binds the writes must wait for) and counts them. Where anything fails, pages
// beyond what the sequences had are given back and no sequence grows.
//
// c.mu is held for the bookkeeping only, not while write copies (through staging, waiting for
// the copy), so that other sequences' calls, View, Len and Stats do not wait for the transfer:
// the sequences are marked writing meanwhile, which holds off their other appends, Reserve and
// Release (they wait), while their pages, taken from the pool, are no one else's; a.busy, held
// shared throughout, holds off Close.
func (c *KVCache) append(ctx context.Context, items []appendItem, write func(dsts [][]appendDst, after []vk.TimelinePoint) error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if len(items) == 0 {
		return nil
	}
	// Wait for the sequences' writers (an Extension's among them) before taking the allocator's
	// busy lock, which they may need to finish; then take it before c.mu, as the lock order
	// says, and look again.
	for {
		c.mu.Lock()
		err := c.idleAll(items)
		c.mu.Unlock()
		if err != nil {
			return err
		}
		c.a.busy.RLock() // keeps the buffers and the sources alive for the transfer
		c.mu.Lock()
		if !c.anyWriting(items) {
			break
		}
		c.mu.Unlock()
		c.a.busy.RUnlock()
	}
	defer c.a.busy.RUnlock()
	defer c.mu.Unlock()
	if err := c.idleAll(items); err != nil { // closed meanwhile
		return err
	}
	had := make([]int, len(items))
	undo := func() {
		for i, it := range items {
			if c.held(it.seq) > had[i] {
				c.shrink(it.seq, had[i]) // an error here leaves the pages bound; the first one is returned
			}
		}
	}
	for i, it := range items {
		had[i] = c.held(it.seq)
	}
	if err := c.growAll(items); err != nil {
		return err
	}
	var after []vk.TimelinePoint
	dsts := make([][]appendDst, len(items))
	for i, it := range items {
		s := &c.seqs[it.seq]
		if p, ok := c.point(it.seq, c.pagesFor(s.len+it.n)); ok {
			after = append(after, p)
		}
		dsts[i] = c.dests(it.seq, s.len, it.n)
	}
	for _, it := range items {
		c.seqs[it.seq].writing = true
	}
	c.mu.Unlock()
	err := write(dsts, after)
	c.mu.Lock()
	for _, it := range items {
		c.seqs[it.seq].writing = false
	}
	c.written.Broadcast()
	if err != nil {
		undo()
		if len(items) == 1 {
			return fmt.Errorf("memory: kv cache: append to sequence %d: %w", items[0].seq, err)
		}
		return fmt.Errorf("memory: kv cache: append to %d sequences: %w", len(items), err)
	}
	for _, it := range items {
		c.seqs[it.seq].len += it.n
	}
	return nil
}

// anyWriting reports whether a sequence of items is being written. c.mu is held.
func (c *KVCache) anyWriting(items []appendItem) bool {
	if c.closed {
		return false // idleAll reports it
	}
	for _, it := range items {
		if c.seqs[it.seq].writing {
			return true
		}
	}
	return false
}

// idleAll is idle for the sequences of items, which must be distinct: it returns once none of
// them is being written. c.mu is held.
func (c *KVCache) idleAll(items []appendItem) error {
	for i, it := range items {
		if err := c.check(it.seq); err != nil {
			return err
		}
		for _, o := range items[:i] {
			if o.seq == it.seq {
				return fmt.Errorf("memory: kv cache: sequence %d is appended to twice in one batch", it.seq)
			}
		}
	}
	for i := 0; i < len(items); {
		if c.closed {
			return ErrClosed
		}
		if c.seqs[items[i].seq].writing {
			c.written.Wait()
			i = 0 // others may have started meanwhile
			continue
		}
		i++
	}
	return nil
}

// idle is check, after waiting for an append to seq in progress to end; c.mu is held.
func (c *KVCache) idle(seq int) error {
	for {
		if err := c.check(seq); err != nil {
			return err
		}
		if !c.seqs[seq].writing {
			return nil
		}
		c.written.Wait()
	}
}

// Reserve commits pages for tokens more tokens of sequence seq (plus Headroom) without appending
// any, so that appends up to there bind nothing: for a prefill, or ahead of a decode step.
func (c *KVCache) Reserve(seq, tokens int) error {
	return c.ReserveBatch([]Reservation{{Seq: seq, Tokens: tokens}})
}

// Reservation is one sequence's part of ReserveBatch: Tokens more tokens of sequence Seq, and
// then, if Ahead > 0, up to Ahead tokens past them where the pool has pages (in place of
// Headroom, and bound whenever they are not all backed).
type Reservation struct {
	Seq, Tokens, Ahead int
}

// ReserveBatch is Reserve for several distinct sequences at once, their binds in one batch.
// Either every sequence gets its pages or, on error, none is bound (pages bound by earlier calls
// stay).
func (c *KVCache) ReserveBatch(rs []Reservation) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	items := make([]appendItem, len(rs))
	for i, r := range rs {
		if err := c.check(r.Seq); err != nil {
			return err
		}
		if slices.ContainsFunc(rs[:i], func(o Reservation) bool { return o.Seq == r.Seq }) {
			return fmt.Errorf("memory: kv cache: sequence %d appears twice in one reservation batch", r.Seq)
		}
		if r.Tokens < 0 {
			return fmt.Errorf("memory: kv cache: reserve for sequence %d: tokens must be >= 0, got %d", r.Seq, r.Tokens)
		}
		if r.Ahead < 0 {
			return fmt.Errorf("memory: kv cache: reserve for sequence %d: ahead must be >= 0, got %d", r.Seq, r.Ahead)
		}
		items[i] = appendItem{seq: r.Seq, n: r.Tokens, ahead: r.Ahead}
	}
	if err := c.idleAll(items); err != nil {
		return err
	}
	return c.growAll(items)
}

// growAll backs n more tokens of each item's sequence (and headroom, takePages): pages for every
// sequence first, then their binds in one batch; where pages run out or a sequence's MaxLen is
// exceeded, those taken go back to the pool unbound. c.mu is held.
func (c *KVCache) growAll(items []appendItem) error {
	gs := make([]growth, 0, len(items))
	for _, it := range items {
		err := c.fits(it.seq, it.n)
		var g growth
		if err == nil {
			g, err = c.takePages(it.seq, c.seqs[it.seq].len+it.n, it.ahead)
		}
		if err != nil {
			c.giveBack(gs)
			return err
		}
		gs = append(gs, g)
	}
	err := c.bindGrowths(gs)
	c.spare()
	return err
}

// spare starts refill where fewer than SparePages pages are free. c.mu is held.
func (c *KVCache) spare() {
	if c.refilling || c.paged != nil || c.pool.spareChunk(c.cfg.SparePages) == 0 {
		return
	}
	c.refilling = true
	go c.refill()
}

// refill allocates chunks of pages, without c.mu, until SparePages pages are free, the budget
// is spent, or an allocation fails (the next growth that needs the pages allocates them, and
// reports the failure; refills wait until pages come back or such an allocation succeeds). The
// chunk being allocated counts against the budget (pool.pending).
func (c *KVCache) refill() {
	for c.refillChunk() {
	}
}

// refillChunk allocates one chunk of spare pages and reports whether it did; when it did not,
// refilling ends in the same hold of c.mu. It holds a.busy shared meanwhile, so that the cache
// and the device stay open.
func (c *KVCache) refillChunk() bool {
	c.a.busy.RLock()
	defer c.a.busy.RUnlock()
	c.mu.Lock()
	defer c.mu.Unlock()
	n := 0
	if !c.closed {
		n = c.pool.beginSpare(c.cfg.SparePages)
	}
	if n == 0 {
		c.refilling = false
		return false
	}
	c.mu.Unlock()
	t0 := time.Now()
	mem, err := c.dev.Allocate(uint64(n)*c.page, c.pool.typ)
	c.mu.Lock()
	if !c.pool.endSpare(mem, err, time.Since(t0)) {
		c.refilling = false
		return false
	}
	return true
}

// Backed is the number of tokens of sequence seq that its pages hold, bound or being bound: its
// Len and the headroom committed ahead of it (0 for a bad seq or a closed cache).
func (c *KVCache) Backed(seq int) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.check(seq) != nil {
		return 0
	}
	return int(uint64(c.held(seq)) * c.page / c.tokenBytes)
}

// pagesFor is the number of pages that tokens tokens of one tensor take.
func (c *KVCache) pagesFor(tokens int) int {
	return int((uint64(tokens)*c.tokenBytes + c.page - 1) / c.page)
}

// growth is pages taken for a sequence and not yet bound: K's and V's, from its page have on
// (the paged layout's in p).
type growth struct {
	seq, have int
	k, v      []pageRef
	p         []uint32
}

// held is the pages of one tensor that sequence seq holds. c.mu is held.
func (c *KVCache) held(seq int) int {
	if c.paged != nil {
		return len(c.seqs[seq].pages)
	}
	return len(c.seqs[seq].k)
}

// quiet waits until no append is copying, so that the paged layout's pages can move. c.mu is
// held (and released while waiting).
func (c *KVCache) quiet() error {
	for {
		if c.closed {
			return ErrClosed
		}
		busy := false
		for i := range c.seqs {
			busy = busy || c.seqs[i].writing
		}
		if !busy {
			return nil
		}
		c.written.Wait()
	}
}

// takePages takes from the pool the pages that back the first tokens tokens of sequence seq (or
// fails), and more where the pool has them: with ahead 0, up to Headroom more tokens' worth,
// taken when the sequence grows past its pages or has less than half of the headroom's pages
// left ahead of it; with ahead > 0, up to ahead more tokens' worth (in place of Headroom),
// whenever they are not all backed. The caller binds them (bindGrowths), which submits the binds
// without waiting for them. c.mu is held.
func (c *KVCache) takePages(seq, tokens, ahead int) (growth, error) {
	g := growth{seq: seq, have: c.held(seq)}
	need := c.pagesFor(tokens)
	short := max(need-g.have, 0)
	if ahead > 0 {
		want := c.pagesFor(min(tokens+ahead, c.cfg.MaxLen))
		if short == 0 && want <= g.have {
			return g, nil
		}
		return c.take(g, short, want)
	}
	want := c.pagesFor(min(tokens+c.cfg.Headroom, c.cfg.MaxLen))
	if short == 0 && (want <= g.have || 2*(g.have-need) >= want-need) {
		return g, nil
	}
	return c.take(g, short, want)
}

// take takes pages for growth g of its sequence: short of them at least (or it fails), up to
// want pages held in all. c.mu is held.
func (c *KVCache) take(g growth, short, want int) (growth, error) {
	seq := g.seq
	if c.paged != nil {
		var err error
		if g.p, err = c.paged.take(short, want-g.have, c.quiet); err != nil {
			return g, fmt.Errorf("memory: kv cache: %d more pages for sequence %d: %w", 2*short, seq, err)
		}
		return g, nil
	}
	pages, err := c.pool.take(2*short, 2*(want-g.have))
	if err != nil {
		return g, fmt.Errorf("memory: kv cache: %d more pages for sequence %d: %w", 2*short, seq, err)
	}
	if len(pages)%2 == 1 {
		c.pool.give(pages[len(pages)-1:])
		pages = pages[:len(pages)-1]
	}
	g.k, g.v = pages[:len(pages)/2], pages[len(pages)/2:]
	return g, nil
}

// giveBack returns the pages of growths not bound to the pool. c.mu is held.
func (c *KVCache) giveBack(gs []growth) {
	for _, g := range gs {
		if c.paged != nil {
			c.paged.give(g.p)
			continue
		}
		c.pool.give(g.v)
		c.pool.give(g.k)
	}
}

// bindGrowths binds the pages of growths (of distinct sequences) in one batch, without waiting
// for it. c.mu is held.
func (c *KVCache) bindGrowths(gs []growth) error {
	if c.paged != nil { // nothing to bind: the block tables take the pages
		for _, g := range gs {
			c.seqs[g.seq].pages = append(c.seqs[g.seq].pages, g.p...)
		}
		return nil
	}
	var binds []vk.SparseBind
	for _, g := range gs {
		kb, vb, off := c.region(g.seq)
		binds = c.binds(binds, kb, off, g.have, g.k)
		binds = c.binds(binds, vb, off, g.have, g.v)
	}
	if len(binds) == 0 {
		return nil // ahead of need, and the pool has nothing to give
	}
	value, err := c.submit(binds)
	if err != nil {
		// The driver may have bound some of the pages before failing (a driver error leaves the
		// binds undefined): were they reused, two regions could share them, and were they freed
		// (Trim), a buffer would keep freed memory bound. They are kept aside until Close.
		for _, g := range gs {
			c.quarantine = append(append(c.quarantine, g.k...), g.v...)
		}
		if len(gs) == 1 {
			return fmt.Errorf("memory: kv cache: sequence %d: %w", gs[0].seq, err)
		}
		return fmt.Errorf("memory: kv cache: %d sequences: %w", len(gs), err)
	}
	for _, g := range gs {
		if len(g.k) == 0 {
			continue
		}
		s := &c.seqs[g.seq]
		s.k = append(s.k, g.k...)
		s.v = append(s.v, g.v...)
		s.marks = append(s.marks, bindMark{pages: len(s.k), value: value})
	}
	return nil
}

// submit submits one batch of binds, after the batch before it (so that pages unbound by one
// are bound elsewhere only after, and values are signalled in order), and returns the timeline
// value it signals. c.mu is held.
func (c *KVCache) submit(binds []vk.SparseBind) (uint64, error) {
	var after []vk.TimelinePoint
	if c.last > c.reached {
		after = []vk.TimelinePoint{{Timeline: c.tl, Value: c.last}}
	}
	value := c.last + 1
	t0 := time.Now()
	err := submitBinds(c.dev, binds, after, vk.TimelinePoint{Timeline: c.tl, Value: value})
	c.submitTime += time.Since(t0)
	if err != nil {
		return 0, err
	}
	c.last = value
	c.batches++
	if c.cfg.SyncBinds {
		if err := c.settle(context.Background()); err != nil {
			return 0, err
		}
	}
	return value, nil
}

// point returns the timeline point after which the first pages pages of sequence seq are bound,
// or false where they are known to be. c.mu is held.
func (c *KVCache) point(seq, pages int) (vk.TimelinePoint, bool) {
	s := &c.seqs[seq]
	for refreshed := false; ; refreshed = true {
		// Of the marks reached, the last says how many pages are known bound: the others go.
		i := 0
		for i+1 < len(s.marks) && s.marks[i+1].value <= c.reached {
			i++
		}
		s.marks = s.marks[i:]
		j := 0
		for j < len(s.marks) && s.marks[j].pages < pages {
			j++
		}
		if j == len(s.marks) || s.marks[j].value <= c.reached {
			return vk.TimelinePoint{}, false // bound by batches already reached
		}
		if refreshed {
			return vk.TimelinePoint{Timeline: c.tl, Value: s.marks[j].value}, true
		}
		if v, err := c.tl.Value(); err == nil {
			c.reached = max(c.reached, v)
		}
	}
}

// binds appends to out the binds of pages to the region at off of buf, from its page first on,
// one bind per run of pages consecutive in both the buffer and one allocation.
func (c *KVCache) binds(out []vk.SparseBind, buf *Buffer, off uint64, first int, pages []pageRef) []vk.SparseBind {
	start := len(out)
	for i, p := range pages {
		ro, mo := off+uint64(first+i)*c.page, uint64(p.index)*c.page
		if n := len(out); n > start {
			b := &out[n-1]
			if b.Memory == p.chunk.mem && b.MemoryOffset+b.Size == mo && b.Offset+b.Size == ro {
				b.Size += c.page
				continue
			}
		}
		out = append(out, vk.SparseBind{Buffer: buf.Buffer, Offset: ro, Size: c.page, Memory: p.chunk.mem, MemoryOffset: mo})
	}
	return out
}

// shrink unbinds the pages of sequence seq from keep on and returns them to the pool, without
// waiting: the next batch, which may bind them elsewhere, waits for it. Nothing may be reading
// them. Where the unbind fails the pages stay bound. c.mu is held.
func (c *KVCache) shrink(seq, keep int) error {
	s := &c.seqs[seq]
	if c.paged != nil {
		if keep < len(s.pages) {
			c.paged.give(s.pages[keep:])
			s.pages = s.pages[:keep]
		}
		return nil
	}
	have := len(s.k)
	if keep >= have {
		return nil
	}
	kb, vb, off := c.region(seq)
	lo, size := off+uint64(keep)*c.page, uint64(have-keep)*c.page
	if _, err := c.submit([]vk.SparseBind{{Buffer: kb.Buffer, Offset: lo, Size: size}, {Buffer: vb.Buffer, Offset: lo, Size: size}}); err != nil {
		return fmt.Errorf("memory: kv cache: unbinding sequence %d: %w", seq, err)
	}
	for i := range s.marks { // the pages from keep on are no longer bound by these batches
		s.marks[i].pages = min(s.marks[i].pages, keep)
	}
	c.pool.give(s.v[keep:])
	c.pool.give(s.k[keep:]) // handed out first next time
	clear(s.k[keep:])
	clear(s.v[keep:])
	s.k, s.v = s.k[:keep], s.v[:keep]
	return nil
}

// Release ends sequence seq: its pages are unbound and kept for reuse, and it holds no tokens.
// Its views report Closed from then on, and calls given them fail with ErrClosed. No kernel may
// be reading it.
func (c *KVCache) Release(seq int) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if err := c.idle(seq); err != nil {
		return err
	}
	if err := c.shrink(seq, 0); err != nil {
		return err
	}
	c.seqs[seq].len = 0
	c.gens[seq].Add(1)
	return nil
}

// Truncate drops the tokens of sequence seq from tokens on, keeping its first tokens (at most
// Len(seq); Len(seq) does nothing): for undoing an append, such as attention.QuantizedKVCache's
// when the second of its two caches fails, or a rejected speculative step. Pages past those the
// kept tokens need are unbound and kept for reuse (the next append binds Headroom again); where
// that unbind fails, the error is returned but the tokens are dropped all the same. Where
// tokens are dropped, the sequence's views report Closed from then on, as after Release, since
// their tokens may be rebound elsewhere; no kernel may be reading it.
func (c *KVCache) Truncate(seq, tokens int) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if err := c.idle(seq); err != nil {
		return err
	}
	s := &c.seqs[seq]
	if tokens < 0 || tokens > s.len {
		return fmt.Errorf("memory: kv cache: truncate sequence %d to %d tokens: it holds %d", seq, tokens, s.len)
	}
	if tokens == s.len {
		return nil
	}
	// The tokens go first: where the unbind fails, the pages stay bound to the sequence (its
	// Release unbinds them) but the truncation stands.
	s.len = tokens
	c.gens[seq].Add(1)
	return c.shrink(seq, c.pagesFor(tokens))
}

// Trim frees the device memory allocations none of whose pages are bound, once the unbinds
// submitted are done: spare pages too (KVCacheConfig.SparePages; a chunk being allocated for
// them meanwhile is kept), until the next append or Reserve allocates them again. In the paged
// layout it frees the buffers the pages moved out of (the views made before then report Closed),
// and the pool's buffers where no sequence holds a page.
func (c *KVCache) Trim() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.closed {
		c.settle(context.Background())
		c.pool.trim()
		if c.paged != nil {
			c.paged.trim()
		}
	}
}

// WaitBinds waits until every bind and unbind submitted so far is done; kernels and copies need
// not (they wait on the device where they must), but a timing of the binds may.
func (c *KVCache) WaitBinds(ctx context.Context) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return ErrClosed
	}
	return c.settle(ctx)
}

// settle waits for the last batch; c.mu is held.
func (c *KVCache) settle(ctx context.Context) error {
	if c.last <= c.reached {
		return nil
	}
	if err := c.tl.Wait(ctx, c.last); err != nil {
		return fmt.Errorf("memory: kv cache: waiting for binds: %w", err)
	}
	c.reached = c.last
	return nil
}

// BindPoints returns the timeline points that work using the tensors must wait for
// (vk.Commands.After): for views of a KVCache (View) whose pages' binds may not be done yet,
// the batches that bound them; nothing for other tensors. Attention kernels wait for them.
func BindPoints(ts ...*Tensor) []vk.TimelinePoint {
	var out []vk.TimelinePoint
	for _, t := range ts {
		if t == nil || t.buf == nil || t.buf.cache == nil {
			continue
		}
		c := t.buf.cache
		c.mu.Lock()
		p, ok := c.tensorPoint(t)
		c.mu.Unlock()
		if ok {
			out = append(out, p)
		}
	}
	return out
}

// tensorPoint is BindPoints for a tensor on one of the cache's buffers: the point after which
// every page it addresses, in every region it touches, is bound. c.mu is held.
func (c *KVCache) tensorPoint(t *Tensor) (vk.TimelinePoint, bool) {
	if c.closed || t.Len() == 0 {
		return vk.TimelinePoint{}, false
	}
	buffer := -1
	for i := range c.k {
		if c.k[i] == t.buf || c.v[i] == t.buf {
			buffer = i
		}
	}
	if buffer < 0 {
		return vk.TimelinePoint{}, false
	}
	dsize := uint64(t.DType.Size())
	last := uint64(t.Offset)
	for i, n := range t.Shape {
		last += uint64(n-1) * uint64(max(t.Strides[i], 0))
	}
	lo, hi := uint64(t.Offset)*dsize, (last+1)*dsize
	region := uint64(c.seqPages) * c.page
	var out vk.TimelinePoint
	found := false
	for r := lo / region; r <= (hi-1)/region; r++ {
		seq := buffer*c.perBuffer + int(r)
		if r >= uint64(c.perBuffer) || seq >= len(c.seqs) {
			break
		}
		end := min(hi, (r+1)*region) - r*region
		if p, ok := c.point(seq, int((end+c.page-1)/c.page)); ok {
			out.Timeline, out.Value, found = p.Timeline, max(out.Value, p.Value), true
		}
	}
	return out, found
}

// View returns sequence seq's keys and values as tensors of shape [1, Len(seq), Heads, HeadDim]
// (token stride Heads*HeadDim, head stride HeadDim), for attention calls and transfers. They view
// the cache's buffers: closing them does nothing, and they report Closed once the cache is
// closed or the sequence released (Release), so that using them then fails with ErrClosed rather
// than reading pages unbound or bound to another sequence. They stay valid while the sequence
// grows, covering the tokens it held when made.
func (c *KVCache) View(seq int) (k, v *Tensor, err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if err := c.check(seq); err != nil {
		return nil, nil, err
	}
	n := c.seqs[seq].len
	if n == 0 {
		return nil, nil, fmt.Errorf("memory: kv cache: sequence %d is empty", seq)
	}
	shape := []int{1, n, c.cfg.Heads, c.cfg.HeadDim}
	view := func(b *Buffer, elem int, pages *pageTable) *Tensor {
		return &Tensor{DType: c.cfg.DType, Shape: shape, Strides: contiguous(shape), Offset: elem, buf: b, owner: c.a,
			gen: &c.gens[seq], genAt: c.gens[seq].Load(), pages: pages}
	}
	if c.paged != nil {
		pt := &pageTable{c.cfg.PageTokens, slices.Clone(c.seqs[seq].pages[:c.pagesFor(n)])}
		return view(c.paged.k, 0, pt), view(c.paged.v, 0, pt), nil
	}
	kb, vb, off := c.region(seq)
	elem := int(off / uint64(c.cfg.DType.Size()))
	return view(kb, elem, nil), view(vb, elem, nil), nil
}

// KVGroup is the part of a Batch that lies in one pair of the cache's buffers: K and V are
// [tokens, Heads, HeadDim] views from the buffers' start through the last token of its
// sequences, whose keys and values a kernel finds at K's and V's tokens [Starts[i], Starts[i] +
// Lens[i]) (their regions). After are the binds that work reading them must wait for
// (vk.Commands.After, vk.DescriptorSet.After); memory.BindPoints does not know the groups' views.
type KVGroup struct {
	K, V   *Tensor
	Index  []int // each sequence's place in the seqs given to Batch
	Starts []int
	Lens   []int
	After  []vk.TimelinePoint
}

// Batch returns where the keys and values of sequences seqs (distinct, each holding tokens) lie,
// grouped by buffer in the order of the buffers, and within a group in the order of seqs, for
// one kernel call over all of them. It describes the sequences as they are when called: as with
// View, they must not be released, nor the cache closed, while a kernel reads them, and tokens
// appended later are not included.
func (c *KVCache) Batch(seqs []int) ([]KVGroup, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return nil, ErrClosed
	}
	if len(seqs) == 0 {
		return nil, fmt.Errorf("memory: kv cache: batch of no sequences")
	}
	groups := make([]*KVGroup, max(len(c.k), 1))
	seen := make(map[int]bool, len(seqs))
	var table []uint32 // the paged layout's
	tokenElems := c.cfg.Heads * c.cfg.HeadDim
	for i, seq := range seqs {
		if err := c.check(seq); err != nil {
			return nil, err
		}
		if seen[seq] {
			return nil, fmt.Errorf("memory: kv cache: sequence %d is twice in the batch", seq)
		}
		seen[seq] = true
		n := c.seqs[seq].len
		if n == 0 {
			return nil, fmt.Errorf("memory: kv cache: sequence %d is empty", seq)
		}
		b := seq / c.perBuffer // 0 for the paged layout: one pair of buffers
		g := groups[b]
		if g == nil {
			g = &KVGroup{}
			groups[b] = g
		}
		g.Index = append(g.Index, i)
		if c.paged != nil { // its block table follows the others' in the group's
			g.Starts = append(g.Starts, len(table)*c.cfg.PageTokens)
			table = append(table, c.seqs[seq].pages[:c.pagesFor(n)]...)
		} else {
			_, _, off := c.region(seq)
			g.Starts = append(g.Starts, int(off/c.tokenBytes))
		}
		g.Lens = append(g.Lens, n)
		if p, ok := c.point(seq, c.pagesFor(n)); ok {
			g.After = append(g.After, p)
		}
	}
	var out []KVGroup
	for b, g := range groups {
		if g == nil {
			continue
		}
		tokens := 0
		for i := range g.Starts {
			tokens = max(tokens, g.Starts[i]+g.Lens[i])
		}
		shape := []int{tokens, c.cfg.Heads, c.cfg.HeadDim}
		var pages *pageTable
		if c.paged != nil {
			pages = &pageTable{c.cfg.PageTokens, table}
		}
		view := func(buf *Buffer) *Tensor {
			return &Tensor{DType: c.cfg.DType, Shape: shape, Strides: []int{tokenElems, c.cfg.HeadDim, 1}, buf: buf, owner: c.a, pages: pages}
		}
		if c.paged != nil {
			g.K, g.V = view(c.paged.k), view(c.paged.v)
		} else {
			g.K, g.V = view(c.k[b]), view(c.v[b])
		}
		out = append(out, *g)
	}
	return out, nil
}

// Stats reports what the cache holds and commits.
func (c *KVCache) Stats() KVCacheStats {
	c.mu.Lock()
	defer c.mu.Unlock()
	st := KVCacheStats{PageSize: c.page, SeqTokens: make([]int, len(c.seqs)), SeqPages: make([]int, len(c.seqs))}
	for i, s := range c.seqs {
		st.SeqTokens[i], st.SeqPages[i] = s.len, len(s.k)+len(s.v)+2*len(s.pages)
		st.NeededBytes += 2 * uint64(s.len) * c.tokenBytes
		st.CommittedBytes += uint64(st.SeqPages[i]) * c.page
	}
	st.FreePages = len(c.pool.free)
	st.BindBatches, st.BindSubmitTime, st.AllocateTime, st.SpareAllocateTime = c.batches, c.submitTime, c.pool.allocTime, c.pool.spareTime
	st.MemoryBytes = uint64(c.pool.held) * c.page
	st.Allocations = len(c.pool.chunks)
	if c.paged != nil {
		st.FreePages = 2 * len(c.paged.free)
		st.MemoryBytes, st.Allocations = c.paged.memory()
		st.AllocateTime = c.paged.allocTime
	}
	st.QuarantinedPages = len(c.quarantine)
	return st
}

// Close releases the cache's buffers and memory; its views report Closed. It waits for
// transfers in flight, not for Extensions (Extend), which must end first. Idempotent.
func (c *KVCache) Close() {
	if c == nil {
		return
	}
	a := c.a
	a.busy.Lock()
	defer a.busy.Unlock()
	a.mu.Lock()
	defer a.mu.Unlock()
	delete(a.caches, c)
	c.destroy()
}

// destroy releases the buffers, then the pages they bound. Callers hold a.busy exclusively and
// a.mu.
func (c *KVCache) destroy() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return
	}
	c.closed = true
	c.written.Broadcast()          // waiters for a sequence being written see the cache closed
	c.settle(context.Background()) // the binds in flight use the buffers and the memory
	c.closeBuffers()
	c.pool.close()
	c.tl.Close()
	c.seqs, c.quarantine = nil, nil
}
