package vk

/*
#include "cvk.h"
*/
import "C"

import (
	"fmt"
	"time"
	"unsafe"

	vk "github.com/goki/vulkan"
)

// SparseResidency reports whether the device can back sparse-residency buffers: nil, or an error
// wrapping ErrFeatureMissing that says what is missing (the sparseBinding or
// sparseResidencyBuffer feature, or a queue family with SPARSE_BINDING for the binds to run on).
func (d *Device) SparseResidency() error {
	if d.closed {
		return ErrClosed
	}
	f := d.info.Features
	switch {
	case !f.SparseBinding:
		return fmt.Errorf("vk: %s lacks the sparseBinding feature: %w", d.info.Name, ErrFeatureMissing)
	case !f.SparseResidencyBuffer:
		return fmt.Errorf("vk: %s lacks the sparseResidencyBuffer feature: %w", d.info.Name, ErrFeatureMissing)
	case d.bindFamily < 0:
		return fmt.Errorf("vk: %s: no queue family has SPARSE_BINDING: %w", d.info.Name, ErrFeatureMissing)
	}
	return nil
}

// NonResidentStrict reports residencyNonResidentStrict: reads of unbound ranges of a sparse
// resource return zero and writes to them are dropped. Without it such reads are undefined.
func (d *Device) NonResidentStrict() bool { return d.info.NonResidentStrict }

// NewSparseBuffer creates a storage buffer of size bytes with sparse binding and sparse
// residency: it reserves address space only, and memory is bound to it page by page with
// BindSparse (the page is Requirements' alignment). It cannot be bound with Bind. The device
// must pass SparseResidency.
func (d *Device) NewSparseBuffer(size uint64) (*Buffer, error) {
	if err := d.SparseResidency(); err != nil {
		return nil, err
	}
	if size == 0 {
		return nil, fmt.Errorf("vk: zero-sized sparse buffer")
	}
	if max := d.info.SparseAddressSpaceSize; max > 0 && size > max {
		return nil, fmt.Errorf("vk: sparse buffer of %d bytes exceeds sparseAddressSpaceSize %d: %w", size, max, ErrOutOfDeviceMemory)
	}
	ci := &vk.BufferCreateInfo{SType: vk.StructureTypeBufferCreateInfo, Size: vk.DeviceSize(size),
		Flags: vk.BufferCreateFlags(vk.BufferCreateSparseBindingBit | vk.BufferCreateSparseResidencyBit),
		Usage: vk.BufferUsageFlags(bufferUsage), SharingMode: vk.SharingModeExclusive}
	if d.bindFamily != int(d.family) { // binds run on a queue of another family: share the buffer with it
		ci.SharingMode, ci.QueueFamilyIndexCount = vk.SharingModeConcurrent, 2
		ci.PQueueFamilyIndices = []uint32{d.family, uint32(d.bindFamily)}
	}
	return d.createBuffer(ci, &Buffer{dev: d, size: size, sparse: true}, "vkCreateBuffer (sparse)")
}

// Sparse reports whether the buffer was made by NewSparseBuffer.
func (b *Buffer) Sparse() bool { return b.sparse }

// SparseBind binds Size bytes of a sparse buffer at Offset to Memory at MemoryOffset, or, with
// Memory nil, unbinds them. Offset, Size and MemoryOffset are multiples of the buffer's
// alignment (Size may instead reach the buffer's end).
type SparseBind struct {
	Buffer       *Buffer
	Offset, Size uint64
	Memory       *Memory
	MemoryOffset uint64
}

// BindSparse performs the binds with one vkQueueBindSparse on the binding queue (BindQueue)
// and waits for them, so work submitted afterwards (Run) sees them. Work that reads a range being
// unbound must have finished; Run waits for its work, so any work submitted before has. Nothing
// is bound when it returns an error from the checks; a driver error leaves the binds undefined.
func (d *Device) BindSparse(binds []SparseBind) error {
	if len(binds) == 0 {
		if d.closed {
			return ErrClosed
		}
		return nil
	}
	fci := &vk.FenceCreateInfo{SType: vk.StructureTypeFenceCreateInfo}
	var fence vk.Fence
	r := vk.CreateFence(d.handle, fci, nil, &fence)
	fci.Free()
	if err := result("vkCreateFence", r); err != nil {
		return err
	}
	defer vk.DestroyFence(d.handle, fence, nil)
	if err := d.submitBinds(binds, nil, TimelinePoint{}, fence); err != nil {
		return err
	}
	for {
		r := vk.WaitForFences(d.handle, 1, []vk.Fence{fence}, vk.True, uint64(time.Second))
		if r == vk.Timeout {
			continue // the binds cannot be abandoned: the fence is in use until they finish
		}
		return result("vkWaitForFences (sparse bind)", r)
	}
}

// SubmitBinds submits the binds with one vkQueueBindSparse on the binding queue (BindQueue) and
// returns without waiting for them: the batch waits until every point of after is reached, binds,
// then signals done (done.Value must exceed every value done.Timeline has reached or will be
// signalled before). Binds are not ordered against command buffers, even on the same queue: work
// that uses the bound memory must wait for done (Commands.After), and a batch that unbinds or
// rebinds memory that earlier binds bound should wait for them (after). Work that reads a range
// being unbound must have finished. binds may be empty (the batch only waits and signals).
// Nothing is submitted when it returns an error.
func (d *Device) SubmitBinds(binds []SparseBind, after []TimelinePoint, done TimelinePoint) error {
	if err := d.checkPoint("signal", done); err != nil {
		return err
	}
	for _, p := range after {
		if err := d.checkPoint("wait", p); err != nil {
			return err
		}
	}
	return d.submitBinds(binds, mergePoints(nil, after...), done, vk.NullFence)
}

func (d *Device) submitBinds(binds []SparseBind, after []TimelinePoint, done TimelinePoint, fence vk.Fence) error {
	if d.closed {
		return ErrClosed
	}
	if err := d.SparseResidency(); err != nil {
		return err
	}
	n := max(len(binds), 1)
	bufs := make([]C.uint64_t, n)
	cb := make([]C.vkattn_sparse_memory_bind, n)
	for i, b := range binds {
		if b.Buffer == nil || !b.Buffer.sparse || b.Buffer.handle == vk.NullBuffer || b.Buffer.dev != d {
			return fmt.Errorf("vk: sparse bind %d: not a live sparse buffer of this device", i)
		}
		_, align, _ := b.Buffer.Requirements()
		end := b.Offset + b.Size
		switch {
		case b.Size == 0 || end < b.Offset || end > b.Buffer.size:
			return fmt.Errorf("vk: sparse bind %d: %d bytes at %d outside the %d-byte buffer", i, b.Size, b.Offset, b.Buffer.size)
		case b.Offset%align != 0 || (b.Size%align != 0 && end != b.Buffer.size) || b.MemoryOffset%align != 0:
			return fmt.Errorf("vk: sparse bind %d: offset %d, size %d, memory offset %d not multiples of the page %d", i,
				b.Offset, b.Size, b.MemoryOffset, align)
		}
		bufs[i] = C.uint64_t(uintptr(unsafe.Pointer(b.Buffer.handle)))
		cb[i] = C.vkattn_sparse_memory_bind{resourceOffset: C.vkattn_size(b.Offset), size: C.vkattn_size(b.Size),
			memoryOffset: C.vkattn_size(b.MemoryOffset)}
		if b.Memory != nil {
			if b.Memory.handle == vk.NullDeviceMemory || b.Memory.dev != d {
				return fmt.Errorf("vk: sparse bind %d: memory freed or of another device", i)
			}
			if b.MemoryOffset > b.Memory.size || b.Size > b.Memory.size-b.MemoryOffset {
				return fmt.Errorf("vk: sparse bind %d: %d bytes at %d outside the %d-byte memory", i, b.Size, b.MemoryOffset, b.Memory.size)
			}
			cb[i].memory = C.uint64_t(uintptr(unsafe.Pointer(b.Memory.handle)))
		}
	}
	if d.fn.bindSparse == nil {
		return fmt.Errorf("vk: vkQueueBindSparse not found: %w", ErrInitialization)
	}
	waits := make([]C.uint64_t, len(after)+1)
	values := make([]C.uint64_t, len(after)+1)
	for i, p := range after {
		waits[i], values[i] = p.Timeline.handle, C.uint64_t(p.Value)
	}
	var signal C.uint64_t
	if done.Timeline != nil {
		signal = done.Timeline.handle
	}
	d.bindMu.Lock() // the binding queue's lock: the compute queue's (mu) where they are one queue
	rc := C.vkattn_queue_bind_sparse(d.fn.bindSparse, C.vkattn_dispatchable(unsafe.Pointer(d.bindQueue)), C.uint32_t(len(binds)),
		&bufs[0], &cb[0], C.uint32_t(len(after)), &waits[0], &values[0], signal, C.uint64_t(done.Value),
		C.uint64_t(uintptr(unsafe.Pointer(fence))))
	d.bindMu.Unlock()
	return result("vkQueueBindSparse", vk.Result(rc))
}
