package memory

import (
	"fmt"
	"time"

	"github.com/vkattn/vkattn/vk"
)

// pagePool hands out physical pages for sparse buffers: device memory allocated in chunks of
// whole pages, and a free list of the pages no buffer has bound. Its user serializes calls.
type pagePool struct {
	dev        *vk.Device
	typ        vk.MemoryType
	page       uint64 // bytes
	chunkPages int    // pages per allocation
	maxPages   int    // pages held at most, bound or free; 0: no limit but device memory

	chunks []*pageChunk
	held   int       // pages in chunks
	free   []pageRef // the next page handed out is the last
	// pending is the pages of a chunk being allocated for spare pages (KVCache.refill), counted
	// against the budget; spareFailed is set when such an allocation failed, and cleared when
	// pages come back or an allocation for a growth succeeds, so that refills do not retry a
	// full device at every call.
	pending     int
	spareFailed bool
	// allocTime is the host time the chunks' allocations took in take, spareTime that of those
	// allocated for spare pages beside the calls (KVCache.refill).
	allocTime, spareTime time.Duration
}

type pageChunk struct {
	mem   *vk.Memory
	pages int // pages in mem
	used  int // pages handed out
}

// pageRef is page index of chunk: bytes [index*page, (index+1)*page) of its memory.
type pageRef struct {
	chunk *pageChunk
	index int
}

// take hands out between lo and hi pages (as many as the budget and device memory allow,
// allocating chunks while fewer than hi are free). Unless it can give lo it gives none and
// returns an error wrapping vk.ErrOutOfDeviceMemory (or the allocation's error); chunks it
// allocated stay in the pool, free.
func (p *pagePool) take(lo, hi int) ([]pageRef, error) {
	for len(p.free) < hi {
		if err := p.grow(lo-len(p.free), hi-len(p.free)); err != nil {
			if len(p.free) >= lo {
				break
			}
			return nil, err
		}
	}
	out := popFree(&p.free, min(hi, len(p.free)))
	for i := range out {
		out[i].chunk.used++
	}
	return out, nil
}

// popFree takes n entries off the end of a free list, the last first.
func popFree[T any](free *[]T, n int) []T {
	out := make([]T, n)
	for i := range out {
		last := len(*free) - 1
		out[i] = (*free)[last]
		*free = (*free)[:last]
	}
	return out
}

// grow allocates one chunk of chunkPages pages, fewer where the budget leaves less room or, when
// the allocation fails, of the need pages still missing (if fewer), before giving up.
func (p *pagePool) grow(need, want int) error {
	n := p.chunkPages
	if p.maxPages > 0 {
		room := p.room()
		if room <= 0 {
			return fmt.Errorf("the page budget of %d pages (%d bytes) is spent: %w",
				p.maxPages, uint64(p.maxPages)*p.page, vk.ErrOutOfDeviceMemory)
		}
		n = min(n, room)
	}
	t0 := time.Now()
	defer func() { p.allocTime += time.Since(t0) }()
	mem, err := p.dev.Allocate(uint64(n)*p.page, p.typ)
	if err != nil && need > 0 && need < n {
		n = need
		mem, err = p.dev.Allocate(uint64(n)*p.page, p.typ)
	}
	if err != nil {
		return fmt.Errorf("allocating %d pages: %w", n, err)
	}
	p.add(mem, n)
	p.spareFailed = false
	return nil
}

// room is the pages the budget leaves, the chunk in flight counted; only where maxPages > 0.
func (p *pagePool) room() int { return p.maxPages - p.held - p.pending }

// spareChunk is the pages of the next chunk to allocate so that spare pages are free: 0 when
// they are, or the budget leaves no room.
func (p *pagePool) spareChunk(spare int) int {
	if p.spareFailed {
		return 0
	}
	n := min(p.chunkPages, spare-len(p.free)-p.pending)
	if p.maxPages > 0 {
		n = min(n, p.room())
	}
	return max(n, 0)
}

// beginSpare starts the allocation of the next chunk of spare pages: its pages (0 for none),
// pending until endSpare.
func (p *pagePool) beginSpare(spare int) int {
	p.pending = p.spareChunk(spare)
	return p.pending
}

// endSpare ends it: the chunk allocated in mem, which took took, joins the pool, or, where err,
// refills stop until pages come back. It reports whether the chunk joined.
func (p *pagePool) endSpare(mem *vk.Memory, err error, took time.Duration) bool {
	n := p.pending
	p.pending = 0
	p.spareTime += took
	if err != nil {
		p.spareFailed = true
		return false
	}
	p.add(mem, n)
	return true
}

// add puts a chunk of n pages, allocated in mem, in the pool, its pages free.
func (p *pagePool) add(mem *vk.Memory, n int) {
	c := &pageChunk{mem: mem, pages: n}
	p.chunks = append(p.chunks, c)
	p.held += n
	for i := n - 1; i >= 0; i-- { // page 0 is handed out first, so runs bind as one range
		p.free = append(p.free, pageRef{c, i})
	}
}

// give returns pages handed out by take.
func (p *pagePool) give(pages []pageRef) {
	if len(pages) > 0 {
		p.spareFailed = false
	}
	for i := len(pages) - 1; i >= 0; i-- { // so take hands them out in the same order again
		pages[i].chunk.used--
		p.free = append(p.free, pages[i])
	}
}

// trim frees the chunks none of whose pages are handed out.
func (p *pagePool) trim() {
	p.spareFailed = false
	keep := p.free[:0]
	for _, r := range p.free {
		if r.chunk.used > 0 {
			keep = append(keep, r)
		}
	}
	clear(p.free[len(keep):])
	p.free = keep
	chunks := p.chunks[:0]
	for _, c := range p.chunks {
		if c.used > 0 {
			chunks = append(chunks, c)
			continue
		}
		c.mem.Close()
		p.held -= c.pages
	}
	clear(p.chunks[len(chunks):])
	p.chunks = chunks
}

// close frees every chunk; the buffers that bound its pages must be gone.
func (p *pagePool) close() {
	for _, c := range p.chunks {
		c.mem.Close()
	}
	p.chunks, p.free, p.held = nil, nil, 0
}
