package memory

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"sync"
	"sync/atomic"

	"github.com/vkattn/vkattn/vk"
)

// ErrClosed is returned for work on a closed allocator or tensor.
var ErrClosed = errors.New("memory: closed")

// ErrForeign is returned when a tensor from another allocator is used.
var ErrForeign = errors.New("memory: tensor belongs to another allocator")

// Allocator sub-allocates device memory: one list of large blocks per memory type, first-fit
// with coalescing free lists; requests of at least half a block get their own allocation.
type Allocator struct {
	dev       *vk.Device
	blockSize uint64

	// Lock order: busy, then xfer, then mu, then a KVCache's mu (which is never held while
	// taking xfer or mu).
	mu      sync.Mutex
	blocks  map[int][]*block // by memory type index
	xfer    sync.Mutex       // serializes transfers through staging
	staging *Buffer
	live    map[*Buffer]struct{}  // buffers handed out and not yet closed, staging included
	caches  map[*KVCache]struct{} // KV caches made on the allocator and not yet closed
	closed  bool
	// busy is held shared by every transfer for its whole length and exclusively by Buffer.Close
	// and Close, so no buffer's memory is unmapped or freed while a transfer reads or writes it.
	// A KVCache takes it (shared) before its own lock, and Close (exclusive) before a.mu and the
	// caches' locks. Nothing waits for a KV cache's sequence being written (an Extension, whose
	// writer may need busy) while holding it.
	busy sync.RWMutex

	alwaysStage bool   // tests: transfer through staging even to host-visible memory
	stagingMax  uint64 // tests: if nonzero, the staging size limit instead of stagingLimit()
}

type block struct {
	mem  *vk.Memory
	free []span // sorted by offset, coalesced
}

type span struct{ off, size uint64 }

// DefaultBlockSize is the size of the blocks the allocator carves buffers from.
const DefaultBlockSize = 64 << 20

// MaxStagingSize bounds the host-visible staging buffer that transfers to and from memory the
// host cannot map go through: larger transfers are copied in chunks of at most this many bytes
// (fewer where the device's maxMemoryAllocationSize is smaller).
const MaxStagingSize = 64 << 20

// NewAllocator returns an allocator for the device.
func NewAllocator(dev *vk.Device) *Allocator {
	bs := uint64(DefaultBlockSize)
	if max := dev.Info().MaxMemoryAllocationSize; max > 0 && bs > max {
		bs = max
	}
	return &Allocator{dev: dev, blockSize: bs, blocks: map[int][]*block{}, live: map[*Buffer]struct{}{},
		caches: map[*KVCache]struct{}{}}
}

// Device is the device the allocator serves.
func (a *Allocator) Device() *vk.Device { return a.dev }

// Usage says where a buffer should live.
type Usage int

// Usages.
const (
	DeviceLocal Usage = iota // kernels' tensors
	Staging                  // host-visible, coherent: transfers to and from the host
	// Mapped is host-visible, coherent memory that is device-local where the device has such
	// (a resizable BAR), else Staging's: small tables the host writes before each call and
	// kernels read, which then stay in device memory instead of crossing the bus at every
	// read. Each buffer has an allocation of its own, so that a small BAR heap does not give a
	// whole block to one table.
	Mapped
)

// Buffer is a VkBuffer bound to a sub-allocation (or a dedicated allocation).
type Buffer struct {
	*vk.Buffer
	alloc     *Allocator  // the allocator that made it
	closed    atomic.Bool // set once released (by Close or the allocator's Close)
	blk       *block
	mem       *vk.Memory // the block's or the dedicated memory
	dedicated bool
	internal  bool     // the allocator's staging buffer, left out of Stats' live counts
	cache     *KVCache // the KV cache that owns this sparse buffer, which its Close releases
	off, size uint64   // within mem
}

// Closed reports whether the buffer has been closed, by Close or by its allocator's Close.
func (b *Buffer) Closed() bool { return b == nil || b.closed.Load() }

// Bytes returns the buffer's bytes when its memory is host-visible, else (or once closed) nil.
func (b *Buffer) Bytes() []byte {
	if b.mem == nil {
		return nil
	}
	return b.mem.Bytes(b.off, b.Size())
}

// HostVisible reports whether Bytes works without flushes (host-visible and coherent memory).
func (b *Buffer) HostVisible() bool {
	if b.mem == nil {
		return false
	}
	f := b.mem.Type().Flags
	return f&vk.MemoryHostVisible != 0 && f&vk.MemoryHostCoherent != 0
}

// NewBuffer returns a buffer of size bytes. Requests of at least half the block size get a
// dedicated allocation; smaller ones share blocks. (The allocator's staging buffer always has
// its own.)
func (a *Allocator) NewBuffer(size uint64, usage Usage) (*Buffer, error) {
	return a.newBuffer(size, usage, false)
}

func (a *Allocator) newBuffer(size uint64, usage Usage, internal bool) (*Buffer, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.closed {
		return nil, ErrClosed
	}
	if size == 0 {
		return nil, fmt.Errorf("memory: zero-sized buffer")
	}
	vb, err := a.dev.NewBuffer(size)
	if err != nil {
		return nil, err
	}
	reqSize, align, bits := vb.Requirements()
	typ, err := a.chooseType(bits, usage)
	if err != nil {
		vb.Close()
		return nil, err
	}
	b := &Buffer{Buffer: vb, alloc: a, size: reqSize, internal: internal}
	// The staging buffer (internal) has memory of its own, so that block usage is the callers'.
	if internal || usage == Mapped || reqSize >= a.blockSize/2 {
		b.mem, err = a.dev.Allocate(reqSize, typ)
		b.dedicated = true
	} else {
		err = a.subAllocate(b, typ, reqSize, align)
	}
	if err == nil {
		err = vb.Bind(b.mem, b.off)
	}
	if err != nil {
		a.release(b)
		return nil, fmt.Errorf("memory: %d-byte buffer: %w", size, err)
	}
	a.live[b] = struct{}{}
	return b, nil
}

// chooseType picks the memory type: for DeviceLocal the device-local type of the largest heap
// (host-visible only when nothing else is device-local, as on CPU and unified-memory devices);
// for Staging a host-visible coherent type, cached preferred; for Mapped a host-visible coherent
// type, device-local preferred.
func (a *Allocator) chooseType(bits uint32, usage Usage) (vk.MemoryType, error) {
	return chooseMemoryType(a.dev.MemoryTypes(), a.dev.Info().Heaps, bits, usage)
}

// chooseMemoryType is chooseType among types (indexed by their Index) and heaps.
func chooseMemoryType(types []vk.MemoryType, heaps []vk.MemoryHeap, bits uint32, usage Usage) (vk.MemoryType, error) {
	best, bestScore := -1, -1
	for _, t := range types {
		if bits&(1<<t.Index) == 0 {
			continue
		}
		score := -1
		switch usage {
		case DeviceLocal:
			if t.Flags&vk.MemoryDeviceLocal != 0 {
				score = 2
				if t.Flags&vk.MemoryHostVisible != 0 {
					score = 1
				}
			} else {
				score = 0
			}
		case Staging:
			if t.Flags&(vk.MemoryHostVisible|vk.MemoryHostCoherent) == vk.MemoryHostVisible|vk.MemoryHostCoherent {
				score = 1
				if t.Flags&vk.MemoryHostCached != 0 {
					score = 2
				}
			}
		case Mapped:
			if t.Flags&(vk.MemoryHostVisible|vk.MemoryHostCoherent) == vk.MemoryHostVisible|vk.MemoryHostCoherent {
				score = 1
				if t.Flags&vk.MemoryDeviceLocal != 0 {
					score = 2
				}
			}
		}
		if score < 0 {
			continue
		}
		// Prefer the larger heap among equals (the small BAR heap of discrete GPUs is last).
		score = score<<8 | heapRank(heaps, t.Heap)
		if score > bestScore {
			best, bestScore = t.Index, score
		}
	}
	if best < 0 {
		return vk.MemoryType{}, fmt.Errorf("memory: no memory type for usage %d among bits %#x", usage, bits)
	}
	return types[best], nil
}

func heapRank(heaps []vk.MemoryHeap, h int) int {
	rank := 0
	for _, o := range heaps {
		if h < len(heaps) && o.Size < heaps[h].Size {
			rank++
		}
	}
	return rank
}

func (a *Allocator) subAllocate(b *Buffer, typ vk.MemoryType, size, align uint64) error {
	for _, blk := range a.blocks[typ.Index] {
		if off, ok := blk.take(size, align); ok {
			b.blk, b.mem, b.off = blk, blk.mem, off
			return nil
		}
	}
	mem, err := a.dev.Allocate(a.blockSize, typ)
	if err != nil {
		return err
	}
	blk := &block{mem: mem, free: []span{{0, a.blockSize}}}
	a.blocks[typ.Index] = append(a.blocks[typ.Index], blk)
	off, _ := blk.take(size, align)
	b.blk, b.mem, b.off = blk, mem, off
	return nil
}

// take finds the first free span that holds size bytes at the alignment.
func (blk *block) take(size, align uint64) (uint64, bool) {
	for i, s := range blk.free {
		start := (s.off + align - 1) / align * align
		if start+size > s.off+s.size {
			continue
		}
		var repl []span
		if start > s.off {
			repl = append(repl, span{s.off, start - s.off})
		}
		if end := s.off + s.size; start+size < end {
			repl = append(repl, span{start + size, end - start - size})
		}
		blk.free = append(blk.free[:i], append(repl, blk.free[i+1:]...)...)
		return start, true
	}
	return 0, false
}

// give returns a span and merges it with its neighbours.
func (blk *block) give(off, size uint64) {
	i := sort.Search(len(blk.free), func(i int) bool { return blk.free[i].off > off })
	blk.free = append(blk.free[:i], append([]span{{off, size}}, blk.free[i:]...)...)
	merged := blk.free[:0]
	for _, s := range blk.free {
		if n := len(merged); n > 0 && merged[n-1].off+merged[n-1].size == s.off {
			merged[n-1].size += s.size
			continue
		}
		merged = append(merged, s)
	}
	blk.free = merged
}

func (a *Allocator) release(b *Buffer) {
	b.Buffer.Close()
	switch {
	case b.dedicated && b.mem != nil:
		b.mem.Close()
	case b.blk != nil:
		b.blk.give(b.off, b.size)
	}
	b.mem, b.blk = nil, nil
}

// Close releases the buffer's memory. It is idempotent, and a no-op once the allocator is
// closed (which released the buffer already) and for a KV cache's buffers (the cache's Close
// releases them).
func (b *Buffer) Close() {
	if b == nil {
		return
	}
	if b.closed.Load() || b.cache != nil {
		return
	}
	a := b.alloc
	a.busy.Lock() // wait for transfers in flight
	defer a.busy.Unlock()
	a.mu.Lock()
	defer a.mu.Unlock()
	a.closeLocked(b)
}

// closeLocked releases b unless already closed. Callers hold a.mu, and a.busy exclusively or
// (for the staging buffer, which only transfers use) a.xfer.
func (a *Allocator) closeLocked(b *Buffer) {
	if b.closed.Load() { // closed meanwhile
		return
	}
	b.closed.Store(true)
	a.release(b)
	delete(a.live, b)
}

// Stats describe the allocator's memory. The allocator's own staging buffer is counted in
// StagingBytes only.
type Stats struct {
	LiveBuffers    int    // buffers handed out and not yet closed
	LiveBytes      uint64 // their sizes (as the device requires them)
	Dedicated      int    // live buffers with their own allocation
	DedicatedBytes uint64
	Blocks         int    // shared blocks (kept for reuse when empty)
	BlockBytes     uint64 // their total size
	FreeBlockBytes uint64 // the part of the blocks that no buffer uses
	StagingBytes   uint64 // the staging buffer for transfers, where one was needed
}

// Stats reports live buffers and block usage.
func (a *Allocator) Stats() Stats {
	a.mu.Lock()
	defer a.mu.Unlock()
	var s Stats
	for b := range a.live {
		if b.internal {
			s.StagingBytes += b.size
			continue
		}
		s.LiveBuffers++
		s.LiveBytes += b.size
		if b.dedicated {
			s.Dedicated++
			s.DedicatedBytes += b.size
		}
	}
	for _, bs := range a.blocks {
		for _, b := range bs {
			s.Blocks++
			s.BlockBytes += b.mem.Size()
			for _, f := range b.free {
				s.FreeBlockBytes += f.size
			}
		}
	}
	return s
}

// stagingLimit is the largest staging buffer: MaxStagingSize, or less where the device's
// maxMemoryAllocationSize (or the test hook) says so.
func (a *Allocator) stagingLimit() uint64 {
	n := uint64(MaxStagingSize)
	if m := a.dev.Info().MaxMemoryAllocationSize; m > 0 && m < n {
		n = m
	}
	if a.stagingMax > 0 && a.stagingMax < n {
		n = a.stagingMax
	}
	return n
}

// stagingBuffer returns the staging buffer, grown toward size bytes (a power of two from 1 MiB)
// but never past stagingLimit: transfers larger than the buffer go in chunks. Callers hold
// a.xfer and a.busy (shared).
func (a *Allocator) stagingBuffer(size uint64) (*Buffer, error) {
	limit := a.stagingLimit()
	want := min(size, limit)
	if a.staging != nil && a.staging.Size() >= want && a.staging.Size() <= limit {
		return a.staging, nil
	}
	if a.staging != nil {
		a.mu.Lock()
		a.closeLocked(a.staging)
		a.mu.Unlock()
		a.staging = nil
	}
	n := uint64(1 << 20)
	for n < want {
		n *= 2
	}
	n = min(n, limit)
	b, err := a.newBuffer(n, Staging, true)
	if err != nil {
		return nil, fmt.Errorf("memory: staging buffer: %w", err)
	}
	a.staging = b
	return b, nil
}

// Close frees all blocks. Buffers still open are released with them: their tensors report
// Closed and their transfers fail with ErrClosed; so are KV caches still open. It waits for
// transfers in flight. Idempotent.
func (a *Allocator) Close() {
	if a == nil {
		return
	}
	a.busy.Lock()
	defer a.busy.Unlock()
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.closed {
		return
	}
	a.closed = true
	for c := range a.caches {
		c.destroy()
	}
	a.caches = nil
	a.staging = nil // released with the live buffers
	for b := range a.live {
		b.closed.Store(true)
		a.release(b)
	}
	a.live = nil
	for _, bs := range a.blocks {
		for _, b := range bs {
			b.mem.Close()
		}
	}
	a.blocks = nil
}

// checkTransfer reports ErrClosed for a closed buffer or allocator and checks that n bytes at off
// lie in b. Callers hold a.busy (shared), which keeps both open until they release it.
func (a *Allocator) checkTransfer(b *Buffer, off uint64, n int) error {
	if b.Closed() {
		return ErrClosed
	}
	a.mu.Lock()
	closed := a.closed
	a.mu.Unlock()
	if closed {
		return ErrClosed
	}
	if off > b.Size() || uint64(n) > b.Size()-off {
		return fmt.Errorf("memory: transfer of %d bytes at %d outside a %d-byte buffer", n, off, b.Size())
	}
	return nil
}

// upload and download copy between a buffer and the host: directly when the buffer is
// host-visible and coherent, else through the staging buffer, one chunk of at most its size at a
// time, each copy waiting on the device for the points after (a KV cache view's page binds,
// BindPoints). Neither the buffer nor the allocator can be closed meanwhile (a.busy).
func (a *Allocator) upload(ctx context.Context, dst *Buffer, off uint64, data []byte, after ...vk.TimelinePoint) error {
	a.busy.RLock()
	defer a.busy.RUnlock()
	return a.uploadHeld(ctx, dst, off, data, after...)
}

// uploadHeld is upload for callers that hold a.busy (shared) already.
func (a *Allocator) uploadHeld(ctx context.Context, dst *Buffer, off uint64, data []byte, after ...vk.TimelinePoint) error {
	if err := a.checkTransfer(dst, off, len(data)); err != nil {
		return err
	}
	if dst.HostVisible() && !a.alwaysStage {
		copy(dst.Bytes()[off:], data)
		return nil
	}
	if len(data) == 0 {
		return nil
	}
	a.xfer.Lock()
	defer a.xfer.Unlock()
	st, err := a.stagingBuffer(uint64(len(data)))
	if err != nil {
		return err
	}
	chunk := st.Size()
	for done := uint64(0); done < uint64(len(data)); done += chunk {
		n := min(chunk, uint64(len(data))-done)
		copy(st.Bytes(), data[done:done+n])
		err := a.dev.Run(ctx, func(c *vk.Commands) error {
			c.After(after...)
			c.Copy(st.Buffer, 0, dst.Buffer, off+done, n)
			return nil
		})
		if err != nil {
			return err
		}
	}
	return nil
}

func (a *Allocator) download(ctx context.Context, src *Buffer, off uint64, out []byte, after ...vk.TimelinePoint) error {
	a.busy.RLock()
	defer a.busy.RUnlock()
	if err := a.checkTransfer(src, off, len(out)); err != nil {
		return err
	}
	if src.HostVisible() && !a.alwaysStage {
		copy(out, src.Bytes()[off:])
		return nil
	}
	if len(out) == 0 {
		return nil
	}
	a.xfer.Lock()
	defer a.xfer.Unlock()
	st, err := a.stagingBuffer(uint64(len(out)))
	if err != nil {
		return err
	}
	chunk := st.Size()
	for done := uint64(0); done < uint64(len(out)); done += chunk {
		n := min(chunk, uint64(len(out))-done)
		err := a.dev.Run(ctx, func(c *vk.Commands) error {
			c.After(after...)
			c.Copy(src.Buffer, off+done, st.Buffer, 0, n)
			c.HostBarrier()
			return nil
		})
		if err != nil {
			return err
		}
		copy(out[done:done+n], st.Bytes())
	}
	return nil
}
