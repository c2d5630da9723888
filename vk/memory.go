package vk

import (
	"fmt"
	"slices"
	"unsafe"

	vk "github.com/goki/vulkan"
)

// MemoryFlags are VkMemoryPropertyFlags.
type MemoryFlags uint32

// Memory property bits.
const (
	MemoryDeviceLocal  MemoryFlags = MemoryFlags(vk.MemoryPropertyDeviceLocalBit)
	MemoryHostVisible  MemoryFlags = MemoryFlags(vk.MemoryPropertyHostVisibleBit)
	MemoryHostCoherent MemoryFlags = MemoryFlags(vk.MemoryPropertyHostCoherentBit)
	MemoryHostCached   MemoryFlags = MemoryFlags(vk.MemoryPropertyHostCachedBit)
)

// MemoryType is one of the device's memory types.
type MemoryType struct {
	Index int
	Heap  int
	Flags MemoryFlags
}

// MemoryTypes lists the device's memory types.
func (d *Device) MemoryTypes() []MemoryType { return slices.Clone(d.memTypes) }

// Memory is one VkDeviceMemory allocation, mapped for its lifetime when host-visible.
type Memory struct {
	dev    *Device
	handle vk.DeviceMemory
	size   uint64
	typ    MemoryType
	mapped unsafe.Pointer
}

// Allocate allocates size bytes of the given memory type.
func (d *Device) Allocate(size uint64, typ MemoryType) (*Memory, error) {
	if d.closed {
		return nil, ErrClosed
	}
	if max := d.info.MaxMemoryAllocationSize; max > 0 && size > max {
		return nil, fmt.Errorf("vk: allocation of %d bytes exceeds maxMemoryAllocationSize %d: %w", size, max, ErrOutOfDeviceMemory)
	}
	ai := &vk.MemoryAllocateInfo{SType: vk.StructureTypeMemoryAllocateInfo, AllocationSize: vk.DeviceSize(size),
		MemoryTypeIndex: uint32(typ.Index)}
	m := &Memory{dev: d, size: size, typ: typ}
	var mem vk.DeviceMemory
	r := vk.AllocateMemory(d.handle, ai, nil, &mem)
	ai.Free()
	m.handle = mem
	if err := result("vkAllocateMemory", r); err != nil {
		return nil, err
	}
	if typ.Flags&MemoryHostVisible != 0 {
		var mapped unsafe.Pointer
		if err := result("vkMapMemory", vk.MapMemory(d.handle, m.handle, 0, vk.DeviceSize(vk.WholeSize), 0, &mapped)); err != nil {
			vk.FreeMemory(d.handle, m.handle, nil)
			return nil, err
		}
		m.mapped = mapped
	}
	return m, nil
}

// Size is the allocation's size in bytes.
func (m *Memory) Size() uint64 { return m.size }

// Type is the allocation's memory type.
func (m *Memory) Type() MemoryType { return m.typ }

// Bytes returns the mapped bytes [off, off+n), or nil when the memory is not host-visible.
func (m *Memory) Bytes(off, n uint64) []byte {
	if m.mapped == nil {
		return nil
	}
	return unsafe.Slice((*byte)(unsafe.Add(m.mapped, off)), n)
}

// Coherent reports whether host writes need no flush.
func (m *Memory) Coherent() bool { return m.typ.Flags&MemoryHostCoherent != 0 }

// Close frees the allocation.
func (m *Memory) Close() {
	if m == nil || m.handle == vk.NullDeviceMemory {
		return
	}
	if m.mapped != nil {
		vk.UnmapMemory(m.dev.handle, m.handle)
		m.mapped = nil
	}
	vk.FreeMemory(m.dev.handle, m.handle, nil)
	m.handle = vk.NullDeviceMemory
}

// Buffer is a VkBuffer for storage and transfers.
type Buffer struct {
	dev    *Device
	handle vk.Buffer
	size   uint64
	req    vk.MemoryRequirements
	sparse bool // made by NewSparseBuffer: memory comes from BindSparse, never Bind
}

// BufferUsage for storage buffers that are also copy sources and destinations.
const bufferUsage = vk.BufferUsageStorageBufferBit | vk.BufferUsageTransferSrcBit | vk.BufferUsageTransferDstBit

// NewBuffer creates an unbound buffer of size bytes.
func (d *Device) NewBuffer(size uint64) (*Buffer, error) {
	if d.closed {
		return nil, ErrClosed
	}
	ci := &vk.BufferCreateInfo{SType: vk.StructureTypeBufferCreateInfo, Size: vk.DeviceSize(size),
		Usage: vk.BufferUsageFlags(bufferUsage), SharingMode: vk.SharingModeExclusive}
	return d.createBuffer(ci, &Buffer{dev: d, size: size}, "vkCreateBuffer")
}

// createBuffer makes b's buffer from ci (which it frees) and reads its memory requirements;
// call names the creation in errors.
func (d *Device) createBuffer(ci *vk.BufferCreateInfo, b *Buffer, call string) (*Buffer, error) {
	var h vk.Buffer
	var r vk.Result
	whilePinned(ci.PQueueFamilyIndices, func() { r = vk.CreateBuffer(d.handle, ci, nil, &h) })
	ci.Free()
	b.handle = h
	if err := result(call, r); err != nil {
		return nil, err
	}
	var req vk.MemoryRequirements
	vk.GetBufferMemoryRequirements(d.handle, b.handle, &req)
	req.Deref()
	req.Free() // the binding's C copy, which nothing frees otherwise
	b.req = req
	return b, nil
}

// Size is the buffer's size in bytes.
func (b *Buffer) Size() uint64 { return b.size }

// Requirements returns the buffer's memory size, alignment and allowed memory-type bits.
func (b *Buffer) Requirements() (size, align uint64, typeBits uint32) {
	return uint64(b.req.Size), uint64(b.req.Alignment), b.req.MemoryTypeBits
}

// Bind binds the buffer to memory at offset.
func (b *Buffer) Bind(m *Memory, offset uint64) error {
	if b.sparse {
		return fmt.Errorf("vk: a sparse buffer is bound with BindSparse, not Bind")
	}
	return result("vkBindBufferMemory", vk.BindBufferMemory(b.dev.handle, b.handle, m.handle, vk.DeviceSize(offset)))
}

// Close destroys the buffer (not its memory).
func (b *Buffer) Close() {
	if b == nil || b.handle == vk.NullBuffer {
		return
	}
	vk.DestroyBuffer(b.dev.handle, b.handle, nil)
	b.handle = vk.NullBuffer
}
