package memory

import (
	"context"
	"encoding/binary"
	"fmt"
	"math"
	"sync/atomic"
)

// Tensor is a typed, shaped view of a buffer: element (i0, i1, ...) is at
// Offset + sum(i_k * Strides[k]) elements from the buffer's start. Tensors made by NewTensor are
// contiguous and own their buffer; views share it.
type Tensor struct {
	DType   DType
	Shape   []int
	Strides []int // in elements
	Offset  int   // in elements
	buf     *Buffer
	owner   *Allocator
	owns    bool
	// gen, for a view of a KVCache sequence, is the sequence's generation, which Release
	// advances: the view is closed once it differs from genAt.
	gen   *atomic.Uint64
	genAt uint64
	pages *pageTable // for a view of a paged KVCache: where its tokens lie
}

// pageTable places the tokens of a paged tensor: token t is row pages[t/tokens]*tokens +
// t%tokens of the buffer.
type pageTable struct {
	tokens int
	pages  []uint32
}

// Pages reports, for a view of a paged KVCache (KVCache.View, KVCache.Batch), where its tokens
// lie: token t of the tensor (the dim before the heads) is row pages[t / pageTokens] * pageTokens
// + t % pageTokens of the buffer, rows laid out from the buffer's start with the tensor's token
// and head strides. Other tensors have no pages (nil). Only attention's K and V take paged
// tensors; views, reshapes and transfers refuse them.
func (t *Tensor) Pages() (pageTokens int, pages []uint32) {
	if t == nil || t.pages == nil {
		return 0, nil
	}
	return t.pages.tokens, t.pages.pages
}

// NewTensor allocates a contiguous device tensor of at least one dimension, every one positive.
// The size must fit the device's storage-buffer range, since kernels bind a tensor as one
// storage buffer; a tensor over it is refused before anything is allocated.
func (a *Allocator) NewTensor(dt DType, shape ...int) (*Tensor, error) {
	if dt < F32 || dt > BF16 {
		return nil, fmt.Errorf("memory: invalid dtype %d", int(dt))
	}
	if len(shape) == 0 {
		return nil, fmt.Errorf("memory: a tensor needs at least one dimension")
	}
	limit := uint64(a.dev.Info().MaxStorageBufferRange)
	n := uint64(1)
	over := false // n*size exceeds limit; keep checking the remaining dimensions' signs
	for i, s := range shape {
		if s <= 0 {
			return nil, fmt.Errorf("memory: shape %v: dimension %d is %d, want > 0", shape, i, s)
		}
		if !over && n > limit/uint64(dt.Size())/uint64(s) {
			over = true
		}
		if !over {
			n *= uint64(s)
		}
	}
	if over {
		return nil, fmt.Errorf("memory: tensor %v %s is over the device's maxStorageBufferRange of %d bytes",
			shape, dt, limit)
	}
	bytes := n * uint64(dt.Size())
	bytes = (bytes + 3) &^ 3 // kernels read 32-bit words
	if bytes > limit {
		return nil, fmt.Errorf("memory: tensor %v %s is %d bytes, over the device's maxStorageBufferRange of %d",
			shape, dt, bytes, limit)
	}
	buf, err := a.NewBuffer(bytes, DeviceLocal)
	if err != nil {
		return nil, err
	}
	return &Tensor{DType: dt, Shape: append([]int(nil), shape...), Strides: contiguous(shape), buf: buf, owner: a, owns: true}, nil
}

func contiguous(shape []int) []int {
	st := make([]int, len(shape))
	n := 1
	for i := len(shape) - 1; i >= 0; i-- {
		st[i] = n
		n *= shape[i]
	}
	return st
}

// View returns a tensor sharing t's buffer with another shape, strides and offset (in elements).
// Every element it addresses must lie in the buffer. It does not own the buffer: closing it is a
// no-op, and it is closed when t is.
func (t *Tensor) View(shape, strides []int, offset int) (*Tensor, error) {
	if t.Closed() {
		return nil, fmt.Errorf("memory: view: %w", ErrClosed)
	}
	if t.pages != nil {
		return nil, fmt.Errorf("memory: view of a paged tensor (a paged KV cache's view)")
	}
	if len(shape) == 0 {
		return nil, fmt.Errorf("memory: view: a tensor needs at least one dimension")
	}
	if len(shape) != len(strides) {
		return nil, fmt.Errorf("memory: view: %d dims but %d strides", len(shape), len(strides))
	}
	elems := t.buf.Size() / uint64(t.DType.Size()) // elements the buffer holds
	if offset < 0 || uint64(offset) >= elems {
		return nil, fmt.Errorf("memory: view: offset %d outside the buffer's %d elements", offset, elems)
	}
	last := uint64(offset) // the last element addressed; stays < elems, so nothing overflows
	for i := range shape {
		if shape[i] <= 0 || strides[i] < 0 {
			return nil, fmt.Errorf("memory: view: bad dim %d: size %d stride %d", i, shape[i], strides[i])
		}
		if strides[i] == 0 {
			continue
		}
		if uint64(shape[i]-1) > (elems-1-last)/uint64(strides[i]) {
			return nil, fmt.Errorf("memory: view %v strides %v offset %d reaches beyond the buffer's %d elements",
				shape, strides, offset, elems)
		}
		last += uint64(shape[i]-1) * uint64(strides[i])
	}
	return &Tensor{DType: t.DType, Shape: append([]int(nil), shape...), Strides: append([]int(nil), strides...),
		Offset: offset, buf: t.buf, owner: t.owner, gen: t.gen, genAt: t.genAt}, nil
}

// Reshape is View with contiguous strides over the same elements; t must be contiguous.
func (t *Tensor) Reshape(shape ...int) (*Tensor, error) {
	if !t.Contiguous() {
		return nil, fmt.Errorf("memory: reshape of a non-contiguous tensor")
	}
	n := 1
	for i, s := range shape {
		if s <= 0 {
			return nil, fmt.Errorf("memory: reshape to %v: dimension %d is %d, want > 0", shape, i, s)
		}
		if n > t.Len()/s {
			n = -1 // more elements than t has; no overflow
			break
		}
		n *= s
	}
	if n != t.Len() {
		return nil, fmt.Errorf("memory: reshape %v to %v changes the element count", t.Shape, shape)
	}
	return t.View(shape, contiguous(shape), t.Offset)
}

// Len is the number of elements.
func (t *Tensor) Len() int {
	n := 1
	for _, s := range t.Shape {
		n *= s
	}
	return n
}

// Contiguous reports whether the strides are row-major without gaps.
func (t *Tensor) Contiguous() bool {
	c := contiguous(t.Shape)
	for i := range c {
		if t.Shape[i] > 1 && t.Strides[i] != c[i] {
			return false
		}
	}
	return true
}

// Buffer is the buffer the tensor views.
func (t *Tensor) Buffer() *Buffer { return t.buf }

// Allocator is the allocator that made the tensor's buffer.
func (t *Tensor) Allocator() *Allocator { return t.owner }

// Closed reports whether the tensor's buffer has been released: by Close of the tensor (or, for
// a view, of the tensor it views) or of its allocator; for a view of a KVCache sequence
// (KVCache.View, and views of it), also once the sequence is released.
func (t *Tensor) Closed() bool {
	return t == nil || t.buf.Closed() || t.gen != nil && t.gen.Load() != t.genAt
}

// Close releases the buffer of a tensor made by NewTensor. Idempotent.
func (t *Tensor) Close() {
	if t != nil && t.owns {
		t.buf.Close()
	}
}

// Upload writes float32 values, converted to the tensor's dtype, into a contiguous tensor. On a
// KV cache's view, the copy waits on the device for the binds of its pages (BindPoints).
func (t *Tensor) Upload(ctx context.Context, data []float32) error {
	if err := t.checkIO(len(data)); err != nil {
		return err
	}
	return t.owner.upload(ctx, t.buf, uint64(t.Offset*t.DType.Size()), encode(t.DType, data), BindPoints(t)...)
}

// encode converts float32 values to dt's little-endian bytes.
func encode(dt DType, data []float32) []byte {
	raw := make([]byte, len(data)*dt.Size())
	switch dt {
	case F32:
		for i, x := range data {
			binary.LittleEndian.PutUint32(raw[4*i:], math.Float32bits(x))
		}
	case F16:
		for i, x := range data {
			binary.LittleEndian.PutUint16(raw[2*i:], Float16Bits(x))
		}
	case BF16:
		for i, x := range data {
			binary.LittleEndian.PutUint16(raw[2*i:], BFloat16Bits(x))
		}
	}
	return raw
}

// Download reads a contiguous tensor as float32 values, after the binds of its pages where it
// is a KV cache's view (BindPoints).
func (t *Tensor) Download(ctx context.Context) ([]float32, error) {
	if err := t.checkIO(t.Len()); err != nil {
		return nil, err
	}
	raw := make([]byte, t.Len()*t.DType.Size())
	if err := t.owner.download(ctx, t.buf, uint64(t.Offset*t.DType.Size()), raw, BindPoints(t)...); err != nil {
		return nil, err
	}
	out := make([]float32, t.Len())
	switch t.DType {
	case F32:
		for i := range out {
			out[i] = math.Float32frombits(binary.LittleEndian.Uint32(raw[4*i:]))
		}
	case F16:
		for i := range out {
			out[i] = Float16From(binary.LittleEndian.Uint16(raw[2*i:]))
		}
	case BF16:
		for i := range out {
			out[i] = BFloat16From(binary.LittleEndian.Uint16(raw[2*i:]))
		}
	}
	return out, nil
}

// Fill sets every byte-word of the tensor's buffer region to the 32-bit pattern (for poisoning
// outputs in tests). The tensor must be contiguous.
func (t *Tensor) Fill(ctx context.Context, pattern uint32) error {
	if err := t.checkIO(t.Len()); err != nil {
		return err
	}
	n := t.Len() * t.DType.Size()
	raw := make([]byte, (n+3)&^3)
	for i := 0; i < len(raw); i += 4 {
		binary.LittleEndian.PutUint32(raw[i:], pattern)
	}
	return t.owner.upload(ctx, t.buf, uint64(t.Offset*t.DType.Size()), raw[:n], BindPoints(t)...)
}

func (t *Tensor) checkIO(n int) error {
	if t.Closed() {
		return ErrClosed
	}
	if t.pages != nil {
		return fmt.Errorf("memory: transfers of a paged tensor (a paged KV cache's view) are not supported")
	}
	if !t.Contiguous() {
		return fmt.Errorf("memory: transfers need a contiguous tensor, shape %v strides %v", t.Shape, t.Strides)
	}
	if n != t.Len() {
		return fmt.Errorf("memory: %d values for a tensor of %d elements %v", n, t.Len(), t.Shape)
	}
	return nil
}
