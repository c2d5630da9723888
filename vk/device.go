package vk

/*
#include "cvk.h"
*/
import "C"

import (
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"unsafe"

	vk "github.com/goki/vulkan"
)

// DeviceOptions configure OpenDevice.
type DeviceOptions struct {
	// PipelineCacheFile, if set, is loaded into the device's pipeline cache at open and written
	// back at Close, so compiled pipelines survive between processes.
	PipelineCacheFile string
	// MatrixExtensions enables VK_KHR_cooperative_matrix, VK_NV_cooperative_matrix2 and
	// VK_KHR_shader_bfloat16 (with their features) where the device has them. Off unless a kernel
	// needs them: a validation layer older than these extensions (1.4.311 for bfloat16) rejects
	// their structures.
	MatrixExtensions bool
	// PipelineStatistics enables VK_KHR_pipeline_executable_properties where the device has it
	// and compiles every pipeline with its statistics captured (Pipeline.Executables).
	PipelineStatistics bool
	// SharedBindQueue makes sparse binds run on the compute queue even where the device offers
	// another queue that can bind (for tests and comparisons); see Device.BindQueue.
	SharedBindQueue bool
}

// Device owns a logical device with one compute queue (and a queue for sparse binds where the
// device offers one, see BindQueue), a command pool, a descriptor pool and a pipeline cache.
type Device struct {
	inst      *Instance
	info      PhysicalInfo
	phys      vk.PhysicalDevice
	handle    vk.Device
	queue     vk.Queue
	family    uint32
	memTypes  []MemoryType
	cmdPool   vk.CommandPool
	descPool  *descriptorPool
	cache     vk.PipelineCache
	cacheFile string
	stats     bool // pipelines capture statistics (DeviceOptions.PipelineStatistics, supported)
	fn        deviceFuncs

	// The queue sparse binds run on (bindFamily -1: none has SPARSE_BINDING). It is the compute
	// queue, whose lock is mu, unless the device offers another queue that can bind: then it has
	// its own lock, and binds never wait for Run's lock.
	bindQueue  vk.Queue
	bindFamily int
	bindMu     *sync.Mutex
	ownBindMu  sync.Mutex

	mu     sync.Mutex // guards the compute queue's submissions and the pools
	closed bool
}

// OpenDevice creates a logical device on the physical device with the given index, enabling
// the features and extensions vkattn's kernels may use where the device has them.
func (in *Instance) OpenDevice(index int, opts DeviceOptions) (*Device, error) {
	if in.closed {
		return nil, ErrClosed
	}
	hs, err := in.physicalHandles()
	if err != nil {
		return nil, err
	}
	if index < 0 || index >= len(hs) {
		return nil, fmt.Errorf("vk: device index %d out of range (%d devices): %w", index, len(hs), ErrNoDevice)
	}
	info := in.describe(index, hs[index])
	if info.ComputeFamily < 0 {
		return nil, fmt.Errorf("vk: %s has no compute queue: %w", info.Name, ErrNoDevice)
	}
	wanted := []string{ExtMemoryBudget}
	if opts.MatrixExtensions {
		wanted = append(wanted, ExtCooperativeMatrix, ExtCooperativeMatrix2, ExtShaderBFloat16)
	}
	if opts.PipelineStatistics {
		wanted = append(wanted, ExtPipelineExecutableProperties)
	}
	var exts []string
	enabled := map[string]bool{}
	for _, e := range wanted {
		if info.Extensions[e] {
			exts = append(exts, e)
			enabled[e] = true
		}
	}
	fc := newFeatureChain(info.APIVersion, enabled)
	defer fc.free()
	getFeatures(in, hs[index], fc)
	fc.keepCore()

	bind := in.chooseBindQueue(hs[index], info.ComputeFamily, info.Features.SparseBinding, opts.SharedBindQueue)
	// One queue of the compute family, two where binds take its second, and one of the bind
	// queue's family where that is another.
	families, counts := []C.uint32_t{C.uint32_t(info.ComputeFamily)}, []C.uint32_t{1}
	switch {
	case bind.family == info.ComputeFamily && bind.index == 1:
		counts[0] = 2
	case bind.family >= 0 && bind.family != info.ComputeFamily:
		families, counts = append(families, C.uint32_t(bind.family)), append(counts, 1)
	}
	h, err := in.createDevice(hs[index], fc.head(), families, counts, exts)
	if err != nil {
		return nil, err
	}
	d := &Device{inst: in, info: info, phys: hs[index], handle: h, family: uint32(info.ComputeFamily),
		stats: enabled[ExtPipelineExecutableProperties] && info.Features.PipelineExecutableInfo}
	var queue vk.Queue
	vk.GetDeviceQueue(h, d.family, 0, &queue)
	d.queue = queue
	d.bindFamily, d.bindQueue, d.bindMu = bind.family, queue, &d.mu
	if bind.family >= 0 && (bind.family != info.ComputeFamily || bind.index != 0) {
		var bq vk.Queue
		vk.GetDeviceQueue(h, uint32(bind.family), uint32(bind.index), &bq)
		d.bindQueue, d.bindMu = bq, &d.ownBindMu
	}
	d.loadFuncs()
	var mp vk.PhysicalDeviceMemoryProperties
	vk.GetPhysicalDeviceMemoryProperties(d.phys, &mp)
	mp.Deref()
	d.memTypes = make([]MemoryType, mp.MemoryTypeCount)
	for i := range d.memTypes {
		t := &mp.MemoryTypes[i]
		t.Deref()
		d.memTypes[i] = MemoryType{Index: i, Heap: int(t.HeapIndex), Flags: MemoryFlags(t.PropertyFlags)}
	}
	mp.Free() // the binding's C copy, after every Deref that reads it
	if err := d.init(opts); err != nil {
		d.Close()
		return nil, err
	}
	return d, nil
}

// createDevice makes the VkDevice through the C layer (the binding's CreateDevice converts the
// queue create infos and extension names into C copies that its finalizers may free before the
// call has read them): counts[i] queues of family families[i], the extensions exts and the
// feature chain next.
func (in *Instance) createDevice(phys vk.PhysicalDevice, next unsafe.Pointer, families, counts []C.uint32_t, exts []string) (vk.Device, error) {
	fn := "vkCreateDevice"
	f := instanceProc(in.handle, fn)
	if f == nil {
		return nil, fmt.Errorf("vk: the loader has no %s", fn)
	}
	ce, freeExts := cstrings(exts)
	defer freeExts()
	var h C.vkattn_dispatchable
	r := C.vkattn_create_device(f, C.vkattn_dispatchable(unsafe.Pointer(phys)), next, C.uint32_t(len(families)),
		&families[0], &counts[0], C.uint32_t(len(exts)), ce, &h)
	if err := result(fn, vk.Result(r)); err != nil {
		return nil, err
	}
	return vk.Device(h), nil
}

func (d *Device) init(opts DeviceOptions) error {
	pci := &vk.CommandPoolCreateInfo{
		SType:            vk.StructureTypeCommandPoolCreateInfo,
		Flags:            vk.CommandPoolCreateFlags(vk.CommandPoolCreateResetCommandBufferBit),
		QueueFamilyIndex: d.family,
	}
	var pool vk.CommandPool
	r := vk.CreateCommandPool(d.handle, pci, nil, &pool)
	pci.Free()
	d.cmdPool = pool
	if err := result("vkCreateCommandPool", r); err != nil {
		return err
	}
	var err error
	if d.descPool, err = newDescriptorPool(d); err != nil {
		return err
	}
	d.cacheFile = opts.PipelineCacheFile
	var data []byte
	if d.cacheFile != "" {
		data, _ = os.ReadFile(d.cacheFile) // a missing or stale cache only costs compile time
	}
	return d.createPipelineCache(data)
}

func (d *Device) createPipelineCache(data []byte) error {
	ci := &vk.PipelineCacheCreateInfo{SType: vk.StructureTypePipelineCacheCreateInfo}
	if len(data) > 0 {
		ci.InitialDataSize = uint64(len(data))
		ci.PInitialData = unsafe.Pointer(&data[0])
	}
	var cache vk.PipelineCache
	var r vk.Result
	whilePinned(data, func() { r = vk.CreatePipelineCache(d.handle, ci, nil, &cache) })
	ci.Free()
	d.cache = cache
	if r != vk.Success && len(data) > 0 {
		return d.createPipelineCache(nil) // the driver rejected old data: start empty
	}
	return result("vkCreatePipelineCache", r)
}

// Info describes the physical device.
func (d *Device) Info() *PhysicalInfo { return &d.info }

// Instance is the instance the device was opened from.
func (d *Device) Instance() *Instance { return d.inst }

// Closed reports whether Close has been called.
func (d *Device) Closed() bool { return d.closed }

// WaitIdle waits until the device has finished all submitted work.
func (d *Device) WaitIdle() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.bindMu != &d.mu { // every queue is externally synchronized for vkDeviceWaitIdle
		d.bindMu.Lock()
		defer d.bindMu.Unlock()
	}
	return result("vkDeviceWaitIdle", vk.DeviceWaitIdle(d.handle))
}

func (d *Device) savePipelineCache() {
	if d.cacheFile == "" || d.cache == vk.NullPipelineCache {
		return
	}
	var n uint64
	if vk.GetPipelineCacheData(d.handle, d.cache, &n, nil) != vk.Success || n == 0 {
		return
	}
	buf := make([]byte, n)
	if vk.GetPipelineCacheData(d.handle, d.cache, &n, unsafe.Pointer(&buf[0])) != vk.Success {
		return
	}
	if os.MkdirAll(filepath.Dir(d.cacheFile), 0o755) == nil {
		tmp := d.cacheFile + ".tmp"
		if os.WriteFile(tmp, buf[:n], 0o644) == nil {
			os.Rename(tmp, d.cacheFile)
		}
	}
}

// Close waits for the device, saves the pipeline cache and destroys the device. Objects created
// from it must be closed first.
func (d *Device) Close() {
	if d == nil || d.closed {
		return
	}
	d.closed = true
	vk.DeviceWaitIdle(d.handle)
	d.savePipelineCache()
	if d.cache != vk.NullPipelineCache {
		vk.DestroyPipelineCache(d.handle, d.cache, nil)
	}
	d.descPool.close()
	if d.cmdPool != vk.NullCommandPool {
		vk.DestroyCommandPool(d.handle, d.cmdPool, nil)
	}
	vk.DestroyDevice(d.handle, nil)
}
