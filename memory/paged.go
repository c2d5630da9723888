package memory

import (
	"context"
	"fmt"
	"time"

	"github.com/vkattn/vkattn/vk"
)

// DefaultPageTokens is the tokens per page of a paged KVCache, unless KVCacheConfig.PageTokens
// says otherwise.
const DefaultPageTokens = 16

// pagedPool holds the pages of a paged KVCache: K's pages in one ordinary device buffer and V's
// in another, page i of both being bytes [i*page, (i+1)*page), so that a sequence's block table
// serves K and V alike and a kernel binds one buffer for each. The buffers grow by whole chunks
// of pages (at least half their size, so that growth copies little in all): larger ones replace
// them and the pages are copied on the device; the old ones are retired, still valid for the
// views made before, until trim or close. A free list hands out pages. Its user serializes calls.
type pagedPool struct {
	a          *Allocator
	cache      *KVCache
	page       uint64 // bytes of a page of one tensor
	chunkPages int    // pages the buffers grow by, at least
	maxPages   int    // pages per tensor at most: the budget, or the device's limit on one buffer
	budget     bool   // maxPages comes from KVCacheConfig.MaxPages
	limitName  string // the device limit that bounds a buffer: maxStorageBufferRange or maxMemoryAllocationSize

	k, v    *Buffer // nil before the first page
	cap     int     // pages in k and in v
	free    []uint32
	retired []*Buffer
	// allocTime is the host time the buffers' memory allocations took.
	allocTime time.Duration
}

// take hands out between lo and hi pages (as many as the budget and device memory allow,
// growing the buffers while fewer than hi are free). Unless it can give lo it gives none and
// returns an error wrapping vk.ErrOutOfDeviceMemory (or the allocation's error). wait is called
// before the pages move, and returns once nothing writes to them.
func (p *pagedPool) take(lo, hi int, wait func() error) ([]uint32, error) {
	if len(p.free) < hi {
		if err := p.grow(lo-len(p.free), hi-len(p.free), wait); err != nil && len(p.free) < lo {
			return nil, err
		}
	}
	return popFree(&p.free, min(hi, len(p.free))), nil
}

// grow replaces the buffers by larger ones with want more pages (fewer where the limits or
// device memory leave less room, down to need) and copies the pages over.
func (p *pagedPool) grow(need, want int, wait func() error) error {
	if p.cap > 0 {
		if err := wait(); err != nil {
			return err
		}
	}
	room := p.maxPages - p.cap
	if room < max(need, 1) {
		if p.budget {
			return fmt.Errorf("the page budget of %d pages (%d bytes) is spent: %w", 2*p.maxPages, 2*uint64(p.maxPages)*p.page, vk.ErrOutOfDeviceMemory)
		}
		return fmt.Errorf("%d pages of %d bytes per tensor reach the device's %s: %w", p.cap+max(need, 1), p.page, p.limitName, vk.ErrOutOfDeviceMemory)
	}
	add := (want + p.chunkPages - 1) / p.chunkPages * p.chunkPages
	add = min(max(add, p.cap/2), room)
	k, v, err := p.buffers(p.cap + add)
	if err != nil && need > 0 && need < add {
		add = need
		k, v, err = p.buffers(p.cap + add)
	}
	if err != nil {
		return fmt.Errorf("allocating %d pages: %w", 2*(p.cap+add), err)
	}
	if p.cap > 0 {
		n := uint64(p.cap) * p.page
		err := p.a.dev.Run(context.Background(), func(cmd *vk.Commands) error {
			cmd.Copy(p.k.Buffer, 0, k.Buffer, 0, n)
			cmd.Copy(p.v.Buffer, 0, v.Buffer, 0, n)
			cmd.Barrier()
			return nil
		})
		if err != nil {
			closePaged(k, v)
			return fmt.Errorf("moving %d pages: %w", 2*p.cap, err)
		}
		p.retired = append(p.retired, p.k, p.v)
	}
	p.k, p.v = k, v
	for i := p.cap + add - 1; i >= p.cap; i-- { // the lowest page is handed out first
		p.free = append(p.free, uint32(i))
	}
	p.cap += add
	return nil
}

// buffers allocates K's and V's buffers of pages pages, each with its own memory.
func (p *pagedPool) buffers(pages int) (k, v *Buffer, err error) {
	var out [2]*Buffer
	for i := range out {
		if out[i], err = p.buffer(uint64(pages) * p.page); err != nil {
			closePaged(out[:i]...)
			return nil, nil, err
		}
	}
	return out[0], out[1], nil
}

// buffer allocates one of the pool's buffers, of size bytes rounded up to whole 32-bit words:
// kernels read 16-bit values two to a word, so a last page of an odd count of them is read
// through a whole word.
func (p *pagedPool) buffer(size uint64) (*Buffer, error) {
	vb, err := p.a.dev.NewBuffer((size + 3) &^ 3)
	if err != nil {
		return nil, err
	}
	req, _, bits := vb.Requirements()
	typ, err := p.a.chooseType(bits, DeviceLocal)
	var mem *vk.Memory
	if err == nil {
		t0 := time.Now()
		mem, err = p.a.dev.Allocate(req, typ)
		p.allocTime += time.Since(t0)
	}
	if err == nil {
		if err = vb.Bind(mem, 0); err != nil {
			mem.Close()
		}
	}
	if err != nil {
		vb.Close()
		return nil, err
	}
	return &Buffer{Buffer: vb, alloc: p.a, mem: mem, dedicated: true, size: req, cache: p.cache}, nil
}

// closePaged releases buffers of the pool.
func closePaged(bs ...*Buffer) {
	for _, b := range bs {
		if b != nil && !b.closed.Swap(true) {
			b.Buffer.Close()
			b.mem.Close()
		}
	}
}

// give returns pages handed out by take.
func (p *pagedPool) give(pages []uint32) {
	for i := len(pages) - 1; i >= 0; i-- { // so take hands them out in the same order again
		p.free = append(p.free, pages[i])
	}
}

// memory is the bytes of device memory the pool holds, retired buffers included, and the
// allocations they take.
func (p *pagedPool) memory() (bytes uint64, allocations int) {
	for _, b := range append([]*Buffer{p.k, p.v}, p.retired...) {
		if b != nil {
			bytes += b.size
			allocations++
		}
	}
	return bytes, allocations
}

// trim releases the retired buffers, and the buffers themselves where no page is handed out;
// the views made before the pages last moved report Closed.
func (p *pagedPool) trim() {
	closePaged(p.retired...)
	p.retired = nil
	if len(p.free) == p.cap {
		closePaged(p.k, p.v)
		p.k, p.v, p.cap, p.free = nil, nil, 0, nil
	}
}

// close releases every buffer.
func (p *pagedPool) close() {
	closePaged(append(p.retired, p.k, p.v)...)
	p.retired, p.k, p.v, p.cap, p.free = nil, nil, nil, 0, nil
}
