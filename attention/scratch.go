package attention

import (
	"math/bits"

	"github.com/vkattn/vkattn/memory"
)

// scratchPool keeps the engine's device-local scratch buffers (decode partials) between calls,
// by size class (powers of two), so that a call of a size seen before allocates nothing. Calls
// run one at a time under the engine's lock, which guards the pool; Engine.Close frees it.
type scratchPool struct {
	free map[int][]*memory.Buffer // by class: buffers of 1<<class bytes
	held uint64                   // bytes of the buffers in free
}

// scratchPoolMax bounds the bytes the pool keeps; a buffer handed back beyond it is freed.
const scratchPoolMax = 256 << 20

// get returns a buffer of at least size bytes (at least 4), from the pool or newly allocated:
// of the size class's bytes where they are at most limit (kernels bind whole buffers, within
// maxStorageBufferRange), else of size bytes, not kept by put.
func (p *scratchPool) get(a *memory.Allocator, size, limit uint64) (*memory.Buffer, error) {
	size = max(size, 4)
	class := bits.Len64(size - 1)
	if uint64(1)<<class > limit {
		return a.NewBuffer(size, memory.DeviceLocal)
	}
	if list := p.free[class]; len(list) > 0 {
		b := list[len(list)-1]
		p.free[class] = list[:len(list)-1]
		p.held -= b.Size()
		return b, nil
	}
	return a.NewBuffer(1<<class, memory.DeviceLocal)
}

// put hands back a buffer from get.
func (p *scratchPool) put(b *memory.Buffer) {
	if b.Closed() {
		return
	}
	if n := b.Size(); n&(n-1) != 0 || p.held+n > scratchPoolMax {
		b.Close()
		return
	}
	if p.free == nil {
		p.free = map[int][]*memory.Buffer{}
	}
	class := bits.Len64(b.Size() - 1)
	p.free[class] = append(p.free[class], b)
	p.held += b.Size()
}

// close frees the pool's buffers.
func (p *scratchPool) close() {
	for _, list := range p.free {
		for _, b := range list {
			b.Close()
		}
	}
	p.free, p.held = nil, 0
}
