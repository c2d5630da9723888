package vk

/*
#include <stdlib.h>
#include "cvk.h"
*/
import "C"

import (
	"encoding/binary"
	"fmt"
	"unsafe"

	vk "github.com/goki/vulkan"
)

// PipelineSpec describes a compute pipeline whose bindings 0..Bindings-1 of set 0 are storage
// buffers.
type PipelineSpec struct {
	Name     string // for error messages
	SPIRV    []byte
	Bindings int
	PushSize uint32 // bytes of push constants
	// Specialization holds the values of constant_id 0, 1, ... (32-bit each).
	Specialization []uint32
	// SubgroupSize, if nonzero, is required through VK_EXT_subgroup_size_control (core 1.3).
	SubgroupSize uint32
}

// Pipeline owns a compute pipeline and its layouts.
type Pipeline struct {
	dev       *Device
	name      string
	bindings  int
	pushSize  uint32
	setLayout vk.DescriptorSetLayout
	layout    vk.PipelineLayout
	handle    vk.Pipeline
}

// NewPipeline compiles a compute pipeline through the device's pipeline cache.
func (d *Device) NewPipeline(s PipelineSpec) (*Pipeline, error) {
	if d.closed {
		return nil, ErrClosed
	}
	if len(s.SPIRV) == 0 || len(s.SPIRV)%4 != 0 {
		return nil, fmt.Errorf("vk: pipeline %s: SPIR-V size %d is not a positive multiple of 4", s.Name, len(s.SPIRV))
	}
	if s.Bindings < 0 {
		return nil, fmt.Errorf("vk: pipeline %s: %d bindings", s.Name, s.Bindings)
	}
	p := &Pipeline{dev: d, name: s.Name, bindings: s.Bindings, pushSize: s.PushSize}
	if err := p.create(s); err != nil {
		p.Close()
		return nil, fmt.Errorf("pipeline %s: %w", s.Name, err)
	}
	return p, nil
}

// pipelineStageRequireFullSubgroups is VK_PIPELINE_SHADER_STAGE_CREATE_REQUIRE_FULL_SUBGROUPS_BIT.
const pipelineStageRequireFullSubgroups = vk.PipelineShaderStageCreateFlags(0x2)

func (p *Pipeline) create(s PipelineSpec) error {
	d := p.dev
	// The layouts are made in C (the binding converts their arrays of bindings and push constant
	// ranges into C copies that its finalizers may free before the calls have read them).
	if d.fn.createDescriptorSetLayout == nil || d.fn.createPipelineLayout == nil {
		return fmt.Errorf("vk: %s has no vkCreateDescriptorSetLayout or vkCreatePipelineLayout", d.info.Name)
	}
	dev := C.vkattn_dispatchable(unsafe.Pointer(d.handle))
	var setLayout C.uint64_t
	r := vk.Result(C.vkattn_create_storage_set_layout(d.fn.createDescriptorSetLayout, dev, C.uint32_t(s.Bindings), &setLayout))
	if err := result("vkCreateDescriptorSetLayout", r); err != nil {
		return err
	}
	p.setLayout = bindingHandle[vk.DescriptorSetLayout](setLayout)
	var layout C.uint64_t
	r = vk.Result(C.vkattn_create_pipeline_layout(d.fn.createPipelineLayout, dev, setLayout, C.uint32_t(s.PushSize), &layout))
	if err := result("vkCreatePipelineLayout", r); err != nil {
		return err
	}
	p.layout = bindingHandle[vk.PipelineLayout](layout)

	code := make([]uint32, len(s.SPIRV)/4)
	for i := range code {
		code[i] = binary.LittleEndian.Uint32(s.SPIRV[4*i:])
	}
	smci := &vk.ShaderModuleCreateInfo{SType: vk.StructureTypeShaderModuleCreateInfo, CodeSize: uint64(len(s.SPIRV)), PCode: code}
	var module vk.ShaderModule
	whilePinned(code, func() { r = vk.CreateShaderModule(d.handle, smci, nil, &module) })
	smci.Free()
	if err := result("vkCreateShaderModule", r); err != nil {
		return err
	}
	defer vk.DestroyShaderModule(d.handle, module, nil)

	// The create info lives in C memory (cvk.h says why); so do its nested arrays.
	ci := (*C.vkattn_compute_pipeline_create_info)(C.calloc(1, C.sizeof_vkattn_compute_pipeline_create_info))
	defer C.free(unsafe.Pointer(ci))
	name := C.CString("main")
	defer C.free(unsafe.Pointer(name))
	ci.sType = C.vkattn_stype(vk.StructureTypeComputePipelineCreateInfo)
	ci.layout = handle64(unsafe.Pointer(p.layout))
	ci.basePipelineIndex = -1
	if d.stats {
		ci.flags = C.uint32_t(pipelineCreateCaptureStatistics)
	}
	st := &ci.stage
	st.sType = C.vkattn_stype(vk.StructureTypePipelineShaderStageCreateInfo)
	st.stage = C.uint32_t(vk.ShaderStageComputeBit)
	st.module = handle64(unsafe.Pointer(module))
	st.pName = name
	if n := len(s.Specialization); n > 0 {
		info := (*C.vkattn_specialization_info)(C.calloc(1, C.sizeof_vkattn_specialization_info))
		defer C.free(unsafe.Pointer(info))
		entries := (*C.vkattn_specialization_map_entry)(C.calloc(C.size_t(n), C.sizeof_vkattn_specialization_map_entry))
		defer C.free(unsafe.Pointer(entries))
		data := C.calloc(C.size_t(n), 4)
		defer C.free(data)
		es, vals := unsafe.Slice(entries, n), unsafe.Slice((*uint32)(data), n)
		for i, v := range s.Specialization {
			es[i] = C.vkattn_specialization_map_entry{constantID: C.uint32_t(i), offset: C.uint32_t(4 * i), size: 4}
			vals[i] = v
		}
		info.mapEntryCount, info.pMapEntries, info.dataSize, info.pData = C.uint32_t(n), entries, C.size_t(4*n), data
		st.pSpecializationInfo = info
	}
	if s.SubgroupSize != 0 {
		req := &chain{}
		defer req.free()
		i := req.add(stRequiredSubgroupSizeCI, C.sizeof_vkattn_required_subgroup_size_create_info)
		link[C.vkattn_required_subgroup_size_create_info](req, i).requiredSubgroupSize = C.uint32_t(s.SubgroupSize)
		st.pNext = req.head()
		if d.info.Features.ComputeFullSubgroups {
			st.flags |= C.uint32_t(pipelineStageRequireFullSubgroups) // kernels assume whole subgroups
		}
	}
	if d.fn.createComputePipelines == nil {
		return fmt.Errorf("vk: %s has no vkCreateComputePipelines", d.info.Name)
	}
	var h C.uint64_t
	r = vk.Result(C.vkattn_create_compute_pipeline(d.fn.createComputePipelines, C.vkattn_dispatchable(unsafe.Pointer(d.handle)),
		handle64(unsafe.Pointer(d.cache)), ci, &h))
	if err := result("vkCreateComputePipelines", r); err != nil {
		return err
	}
	p.handle = bindingHandle[vk.Pipeline](h)
	return nil
}

// handle64 is a non-dispatchable Vulkan handle of the binding (a pointer type) as its 64 bits.
func handle64(h unsafe.Pointer) C.uint64_t { return C.uint64_t(uintptr(h)) }

// bindingHandle is handle64's inverse: the 64 bits the C layer returned as the binding's handle
// type T.
func bindingHandle[T any](h C.uint64_t) T { return *(*T)(unsafe.Pointer(&h)) }

// pipelineCreateCaptureStatistics is VK_PIPELINE_CREATE_CAPTURE_STATISTICS_BIT_KHR.
const pipelineCreateCaptureStatistics = vk.PipelineCreateFlags(0x40)

// Executable is one executable of a compiled pipeline with the statistics its driver reports
// (VK_KHR_pipeline_executable_properties): register counts, spills, instruction counts and the
// like, named by the driver.
type Executable struct {
	Name, Description string
	SubgroupSize      uint32
	Statistics        []Statistic
}

// Statistic is one named value; Value holds booleans as 0 or 1.
type Statistic struct {
	Name, Description string
	Value             float64
}

// Executables returns the pipeline's executables and their statistics. The device must have
// been opened with DeviceOptions.PipelineStatistics on a device that offers them.
func (p *Pipeline) Executables() ([]Executable, error) {
	if p == nil || p.dev == nil || p.dev.closed {
		return nil, ErrClosed
	}
	d := p.dev
	if !d.stats {
		if !d.info.Extensions[ExtPipelineExecutableProperties] || !d.info.Features.PipelineExecutableInfo {
			return nil, fmt.Errorf("vk: pipeline %s: %s does not report pipeline statistics (%s)", p.name, d.info.Name, ExtPipelineExecutableProperties)
		}
		return nil, fmt.Errorf("vk: pipeline %s: statistics (%s) need DeviceOptions.PipelineStatistics", p.name, ExtPipelineExecutableProperties)
	}
	gdpa := instanceProc(d.inst.handle, "vkGetDeviceProcAddr")
	if gdpa == nil {
		return nil, fmt.Errorf("vk: the loader has no vkGetDeviceProcAddr")
	}
	dev := C.vkattn_dispatchable(unsafe.Pointer(d.handle))
	proc := func(name string) C.vkattn_pfn {
		cs := C.CString(name)
		defer C.free(unsafe.Pointer(cs))
		return C.vkattn_device_proc(gdpa, dev, cs)
	}
	fProps, fStats := proc("vkGetPipelineExecutablePropertiesKHR"), proc("vkGetPipelineExecutableStatisticsKHR")
	if fProps == nil || fStats == nil {
		return nil, fmt.Errorf("vk: %s lacks the functions of %s", d.info.Name, ExtPipelineExecutableProperties)
	}
	handle := C.uint64_t(uintptr(unsafe.Pointer(p.handle)))
	info := (*C.vkattn_pipeline_info)(C.calloc(1, C.sizeof_vkattn_pipeline_info))
	defer C.free(unsafe.Pointer(info))
	info.sType, info.pipeline = stPipelineInfo, handle
	props, err := enumerate("vkGetPipelineExecutablePropertiesKHR", stPipelineExecProps,
		func(n *C.uint32_t, p *C.vkattn_pipeline_executable_properties) C.int32_t {
			return C.vkattn_pipeline_executables(fProps, dev, info, n, p)
		})
	if err != nil {
		return nil, err
	}
	out := make([]Executable, len(props))
	for i := range props {
		out[i] = Executable{Name: cstring(props[i].name[:]), Description: cstring(props[i].description[:]),
			SubgroupSize: uint32(props[i].subgroupSize)}
		if out[i].Statistics, err = executableStatistics(fStats, dev, handle, uint32(i)); err != nil {
			return nil, err
		}
	}
	return out, nil
}

func executableStatistics(f C.vkattn_pfn, dev C.vkattn_dispatchable, pipeline C.uint64_t, index uint32) ([]Statistic, error) {
	info := (*C.vkattn_pipeline_executable_info)(C.calloc(1, C.sizeof_vkattn_pipeline_executable_info))
	defer C.free(unsafe.Pointer(info))
	info.sType, info.pipeline, info.executableIndex = stPipelineExecInfo, pipeline, C.uint32_t(index)
	stats, err := enumerate("vkGetPipelineExecutableStatisticsKHR", stPipelineExecStatistic,
		func(n *C.uint32_t, p *C.vkattn_pipeline_executable_statistic) C.int32_t {
			return C.vkattn_pipeline_statistics(f, dev, info, n, p)
		})
	if err != nil {
		return nil, err
	}
	out := make([]Statistic, len(stats))
	for i := range stats {
		s := &stats[i]
		out[i] = Statistic{Name: cstring(s.name[:]), Description: cstring(s.description[:]), Value: statisticValue(s)}
	}
	return out, nil
}

// statisticValue reads a VkPipelineExecutableStatisticValueKHR by its format.
func statisticValue(s *C.vkattn_pipeline_executable_statistic) float64 {
	raw := unsafe.Pointer(&s.value)
	switch s.format {
	case 0: // BOOL32
		return float64(*(*uint32)(raw))
	case 1: // INT64
		return float64(*(*int64)(raw))
	case 2: // UINT64
		return float64(*(*uint64)(raw))
	default: // FLOAT64
		return *(*float64)(raw)
	}
}

// Close destroys the pipeline and its layouts.
func (p *Pipeline) Close() {
	if p == nil || p.dev == nil {
		return
	}
	h := p.dev.handle
	if p.handle != vk.NullPipeline {
		vk.DestroyPipeline(h, p.handle, nil)
	}
	if p.layout != vk.NullPipelineLayout {
		vk.DestroyPipelineLayout(h, p.layout, nil)
	}
	if p.setLayout != vk.NullDescriptorSetLayout {
		vk.DestroyDescriptorSetLayout(h, p.setLayout, nil)
	}
	p.dev = nil
}

// descriptorPool hands out storage-buffer descriptor sets, growing by whole pools.
type descriptorPool struct {
	dev   *Device
	pools []vk.DescriptorPool
}

const setsPerPool = 256

func newDescriptorPool(d *Device) (*descriptorPool, error) {
	dp := &descriptorPool{dev: d}
	return dp, dp.grow()
}

func (dp *descriptorPool) grow() error {
	// The pool is made in C (the binding converts its array of pool sizes into a C copy that its
	// finalizers may free before the call has read it).
	d := dp.dev
	if d.fn.createDescriptorPool == nil {
		return fmt.Errorf("vk: %s has no vkCreateDescriptorPool", d.info.Name)
	}
	var pool C.uint64_t
	r := C.vkattn_create_storage_descriptor_pool(d.fn.createDescriptorPool, C.vkattn_dispatchable(unsafe.Pointer(d.handle)),
		setsPerPool, setsPerPool*12, &pool)
	if err := result("vkCreateDescriptorPool", vk.Result(r)); err != nil {
		return err
	}
	dp.pools = append(dp.pools, bindingHandle[vk.DescriptorPool](pool))
	return nil
}

// allocate returns a set of the layout and the pool it came from.
func (dp *descriptorPool) allocate(layout vk.DescriptorSetLayout) (vk.DescriptorSet, vk.DescriptorPool, error) {
	for attempt := 0; attempt < 2; attempt++ {
		for i := len(dp.pools) - 1; i >= 0; i-- {
			layouts := []vk.DescriptorSetLayout{layout}
			ai := &vk.DescriptorSetAllocateInfo{SType: vk.StructureTypeDescriptorSetAllocateInfo,
				DescriptorPool: dp.pools[i], DescriptorSetCount: 1, PSetLayouts: layouts}
			var set vk.DescriptorSet
			var r vk.Result
			whilePinned(layouts, func() { r = vk.AllocateDescriptorSets(dp.dev.handle, ai, &set) })
			ai.Free()
			if r == vk.Success {
				return set, dp.pools[i], nil
			}
		}
		if err := dp.grow(); err != nil {
			return nil, nil, err
		}
	}
	return nil, nil, fmt.Errorf("vk: descriptor set allocation failed: %w", ErrOutOfDeviceMemory)
}

func (dp *descriptorPool) close() {
	if dp == nil {
		return
	}
	for _, p := range dp.pools {
		vk.DestroyDescriptorPool(dp.dev.handle, p, nil)
	}
	dp.pools = nil
}

// BufferRange is a range of a buffer bound to one binding.
type BufferRange struct {
	Buffer *Buffer
	Offset uint64
	Size   uint64 // 0 means to the end of the buffer
}

// DescriptorSet binds buffers to a pipeline's bindings.
type DescriptorSet struct {
	pipe   *Pipeline
	handle vk.DescriptorSet
	pool   vk.DescriptorPool
	after  []TimelinePoint // what submissions dispatching it wait for (After)
}

// NewDescriptorSet allocates a set for the pipeline and binds one range to each binding.
func (p *Pipeline) NewDescriptorSet(ranges ...BufferRange) (*DescriptorSet, error) {
	if p.dev == nil || p.dev.closed {
		return nil, ErrClosed
	}
	if len(ranges) != p.bindings {
		return nil, fmt.Errorf("vk: pipeline %s has %d bindings, got %d buffers", p.name, p.bindings, len(ranges))
	}
	if p.dev.fn.updateDescriptorSets == nil {
		return nil, fmt.Errorf("vk: %s has no vkUpdateDescriptorSets", p.dev.info.Name)
	}
	p.dev.mu.Lock()
	set, pool, err := p.dev.descPool.allocate(p.setLayout)
	p.dev.mu.Unlock()
	if err != nil {
		return nil, err
	}
	// The writes are made in C (the binding's UpdateDescriptorSets passes C copies of them that
	// its finalizers may free while the driver still reads them).
	n := len(ranges)
	bufs, offs, sizes := make([]C.uint64_t, n), make([]C.uint64_t, n), make([]C.uint64_t, n)
	for i, br := range ranges {
		bufs[i], offs[i], sizes[i] = handle64(unsafe.Pointer(br.Buffer.handle)), C.uint64_t(br.Offset), C.uint64_t(br.Size)
		if br.Size == 0 {
			sizes[i] = C.uint64_t(vk.WholeSize)
		}
	}
	var bp, op, sp *C.uint64_t
	if n > 0 {
		bp, op, sp = &bufs[0], &offs[0], &sizes[0]
	}
	C.vkattn_update_buffer_descriptors(p.dev.fn.updateDescriptorSets, C.vkattn_dispatchable(unsafe.Pointer(p.dev.handle)),
		handle64(unsafe.Pointer(set)), C.uint32_t(n), bp, op, sp)
	return &DescriptorSet{pipe: p, handle: set, pool: pool}, nil
}

// Close returns the set to its pool.
func (s *DescriptorSet) Close() {
	if s == nil || s.handle == nil {
		return
	}
	d := s.pipe.dev
	if d != nil && !d.closed {
		d.mu.Lock()
		set := s.handle
		vk.FreeDescriptorSets(d.handle, s.pool, 1, &set)
		d.mu.Unlock()
	}
	s.handle = nil
}
