package vk

/*
#include <stdlib.h>
#include "cvk.h"

// VkSparseMemoryBind, VkSparseBufferMemoryBindInfo and VkBindSparseInfo with the specification's
// member layout (handles are 64-bit), checked below.
typedef struct {
	vkattn_size resourceOffset;
	vkattn_size size;
	uint64_t memory; // VkDeviceMemory; 0 unbinds
	vkattn_size memoryOffset;
	uint32_t flags;
} vkattn_sparse_memory_bind;

typedef struct {
	uint64_t buffer; // VkBuffer
	uint32_t bindCount;
	const vkattn_sparse_memory_bind *pBinds;
} vkattn_sparse_buffer_bind_info;

typedef struct {
	vkattn_stype sType;
	const void *pNext;
	uint32_t waitSemaphoreCount;
	const uint64_t *pWaitSemaphores;
	uint32_t bufferBindCount;
	const vkattn_sparse_buffer_bind_info *pBufferBinds;
	uint32_t imageOpaqueBindCount;
	const void *pImageOpaqueBinds;
	uint32_t imageBindCount;
	const void *pImageBinds;
	uint32_t signalSemaphoreCount;
	const uint64_t *pSignalSemaphores;
} vkattn_bind_sparse_info;

_Static_assert(sizeof(vkattn_sparse_memory_bind) == 40, "sizeof VkSparseMemoryBind");
_Static_assert(offsetof(vkattn_sparse_memory_bind, flags) == 32, "VkSparseMemoryBind.flags");
_Static_assert(sizeof(vkattn_sparse_buffer_bind_info) == 24, "sizeof VkSparseBufferMemoryBindInfo");
_Static_assert(offsetof(vkattn_bind_sparse_info, pBufferBinds) == 40, "VkBindSparseInfo.pBufferBinds");
_Static_assert(offsetof(vkattn_bind_sparse_info, pSignalSemaphores) == 88, "VkBindSparseInfo.pSignalSemaphores");
_Static_assert(sizeof(vkattn_bind_sparse_info) == 96, "sizeof VkBindSparseInfo");

// vkattn_queue_bind_sparse submits one VkBindSparseInfo of n buffer binds (binds[i] to
// buffers[i]; runs of the same buffer share one VkSparseBufferMemoryBindInfo) that signals fence.
static int32_t vkattn_queue_bind_sparse(vkattn_pfn f, vkattn_dispatchable queue, uint32_t n,
	const uint64_t *buffers, const vkattn_sparse_memory_bind *binds, uint64_t fence) {
	vkattn_sparse_buffer_bind_info *infos = malloc((size_t)n * sizeof *infos);
	if (!infos) {
		return -1; // VK_ERROR_OUT_OF_HOST_MEMORY
	}
	uint32_t m = 0;
	for (uint32_t i = 0; i < n; i++) {
		if (m > 0 && infos[m - 1].buffer == buffers[i]) {
			infos[m - 1].bindCount++;
			continue;
		}
		infos[m].buffer = buffers[i];
		infos[m].bindCount = 1;
		infos[m].pBinds = &binds[i];
		m++;
	}
	vkattn_bind_sparse_info info = {.sType = 7, .bufferBindCount = m, .pBufferBinds = infos}; // VK_STRUCTURE_TYPE_BIND_SPARSE_INFO
	int32_t r = ((int32_t(*)(vkattn_dispatchable, uint32_t, const vkattn_bind_sparse_info *, uint64_t))f)(queue, 1, &info, fence);
	free(infos);
	return r;
}
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
// sparseResidencyBuffer feature, or SPARSE_BINDING on the compute queue's family, the queue that
// binds run on).
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
	}
	var n uint32
	vk.GetPhysicalDeviceQueueFamilyProperties(d.phys, &n, nil)
	qs := make([]vk.QueueFamilyProperties, n)
	vk.GetPhysicalDeviceQueueFamilyProperties(d.phys, &n, qs)
	if d.family >= n {
		return fmt.Errorf("vk: %s: queue family %d not listed", d.info.Name, d.family)
	}
	qs[d.family].Deref()
	if vk.QueueFlagBits(qs[d.family].QueueFlags)&vk.QueueSparseBindingBit == 0 {
		return fmt.Errorf("vk: %s: the compute queue family %d has no SPARSE_BINDING (a separate binding queue is not supported yet): %w",
			d.info.Name, d.family, ErrFeatureMissing)
	}
	return nil
}

// NonResidentStrict reports residencyNonResidentStrict: reads of unbound ranges of a sparse
// resource return zero and writes to them are dropped. Without it such reads are undefined.
func (d *Device) NonResidentStrict() bool {
	var p vk.PhysicalDeviceProperties
	vk.GetPhysicalDeviceProperties(d.phys, &p)
	p.Deref()
	p.SparseProperties.Deref()
	return p.SparseProperties.ResidencyNonResidentStrict == vk.True
}

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
	b := &Buffer{dev: d, size: size, sparse: true}
	var h vk.Buffer
	r := vk.CreateBuffer(d.handle, ci, nil, &h)
	ci.Free()
	b.handle = h
	if err := result("vkCreateBuffer (sparse)", r); err != nil {
		return nil, err
	}
	var req vk.MemoryRequirements
	vk.GetBufferMemoryRequirements(d.handle, b.handle, &req)
	req.Deref()
	b.req = req
	return b, nil
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

// BindSparse performs the binds with one vkQueueBindSparse on the compute queue and waits for
// its fence, so work submitted afterwards (Run) sees them: binds are not ordered against command
// buffers otherwise. Work that reads a range being unbound must have finished; Run waits for its
// work, so any work submitted before has. Nothing is bound when it returns an error from the
// checks; a driver error leaves the binds undefined.
func (d *Device) BindSparse(binds []SparseBind) error {
	if d.closed {
		return ErrClosed
	}
	if len(binds) == 0 {
		return nil
	}
	bufs := make([]C.uint64_t, len(binds))
	cb := make([]C.vkattn_sparse_memory_bind, len(binds))
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
	fn := instanceProc(d.inst.handle, "vkQueueBindSparse")
	if fn == nil {
		return fmt.Errorf("vk: vkQueueBindSparse not found: %w", ErrInitialization)
	}
	fci := &vk.FenceCreateInfo{SType: vk.StructureTypeFenceCreateInfo}
	var fence vk.Fence
	r := vk.CreateFence(d.handle, fci, nil, &fence)
	fci.Free()
	if err := result("vkCreateFence", r); err != nil {
		return err
	}
	defer vk.DestroyFence(d.handle, fence, nil)
	d.mu.Lock() // the queue is shared with Run: vkQueueBindSparse and vkQueueSubmit need it held
	defer d.mu.Unlock()
	rc := C.vkattn_queue_bind_sparse(fn, C.vkattn_dispatchable(unsafe.Pointer(d.queue)), C.uint32_t(len(binds)),
		&bufs[0], &cb[0], C.uint64_t(uintptr(unsafe.Pointer(fence))))
	if err := result("vkQueueBindSparse", vk.Result(rc)); err != nil {
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
