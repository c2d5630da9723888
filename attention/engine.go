// Package attention is vkattn's public API: an Engine bound to one Vulkan device that runs
// FlashAttention and its variants on tensors it allocates. The float64 oracle every kernel is
// checked against is in attention/reference.
package attention

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/vkattn/vkattn/devices"
	"github.com/vkattn/vkattn/memory"
	"github.com/vkattn/vkattn/vk"
)

// ErrClosed is returned by a closed Engine.
var ErrClosed = errors.New("attention: engine is closed")

// TierEnv forces a tier ("scalar", "subgroup", ...) for calls whose Options leave it automatic.
const TierEnv = "VKATTN_TIER"

// Config configures New.
type Config struct {
	// Device picks the device by index or name substring; empty means $VKATTN_DEVICE, else the
	// first discrete GPU, then integrated, then CPU (lavapipe).
	Device string
	// Validation turns on the Khronos validation layer (it must be installed).
	Validation bool
	// OnMessage receives validation and driver warnings and errors.
	OnMessage func(vk.Message)
	// PipelineCacheDir keeps compiled pipelines between runs; empty means the user cache dir,
	// "-" means no on-disk cache.
	PipelineCacheDir string
	// PipelineStatistics captures the driver's statistics of every kernel compiled (registers,
	// spills, ...; VK_KHR_pipeline_executable_properties) for Engine.KernelStatistics.
	PipelineStatistics bool
}

// Engine runs attention kernels on one device. Its methods are safe for concurrent use; work is
// submitted to one queue in call order.
type Engine struct {
	inst    *vk.Instance
	dev     *vk.Device
	profile devices.Profile
	alloc   *memory.Allocator

	mu     sync.Mutex
	pipes  map[string]*compiled
	seqBuf *memory.Buffer // sequence tables of the call in flight
	// arrivals are the counters of the decode's merge in its last workgroups (arrivalCounts).
	arrivals *memory.Buffer
	// scratchPool keeps scratch buffers between calls (decode partials).
	scratchPool scratchPool
	closed      atomic.Bool // set under mu; read without it by usable
}

// New opens an engine on the configured device.
func New(cfg Config) (*Engine, error) {
	inst, err := vk.NewInstance(vk.InstanceOptions{Validation: cfg.Validation, OnMessage: cfg.OnMessage})
	if err != nil {
		return nil, fmt.Errorf("attention: %w", err)
	}
	e, err := newEngine(inst, cfg)
	if err != nil {
		inst.Close()
		return nil, err
	}
	return e, nil
}

func newEngine(inst *vk.Instance, cfg Config) (*Engine, error) {
	profiles, err := devices.List(inst)
	if err != nil {
		return nil, fmt.Errorf("attention: %w", err)
	}
	idx, err := devices.Select(profiles, cfg.Device)
	if err != nil {
		return nil, fmt.Errorf("attention: %w", err)
	}
	prof := profiles[idx]
	dev, err := inst.OpenDevice(idx, vk.DeviceOptions{PipelineCacheFile: cacheFile(cfg.PipelineCacheDir, &prof),
		MatrixExtensions: prof.Supports(devices.TierCoopMat), PipelineStatistics: cfg.PipelineStatistics})
	if err != nil {
		return nil, fmt.Errorf("attention: %s: %w", prof.Name, err)
	}
	e := &Engine{inst: inst, dev: dev, profile: prof, alloc: memory.NewAllocator(dev), pipes: map[string]*compiled{}}
	return e, nil
}

func cacheFile(dir string, p *devices.Profile) string {
	if dir == "-" {
		return ""
	}
	if dir == "" {
		base, err := os.UserCacheDir()
		if err != nil {
			return ""
		}
		dir = filepath.Join(base, "vkattn")
	}
	name := strings.Map(func(r rune) rune {
		if r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' {
			return r
		}
		return '-'
	}, fmt.Sprintf("%s-%x-%x", p.Name, p.DriverVersion, p.PipelineCacheUUID))
	return filepath.Join(dir, name+".pipelines")
}

// Profile describes the engine's device.
func (e *Engine) Profile() *devices.Profile { return &e.profile }

// Instance is the engine's Vulkan instance (for validation messages).
func (e *Engine) Instance() *vk.Instance { return e.inst }

// Allocator is the engine's device memory allocator.
func (e *Engine) Allocator() *memory.Allocator { return e.alloc }

// NewTensor allocates a device tensor.
func (e *Engine) NewTensor(dt memory.DType, shape ...int) (*memory.Tensor, error) {
	if err := e.usable(); err != nil {
		return nil, err
	}
	return e.alloc.NewTensor(dt, shape...)
}

// Upload allocates a tensor and fills it with data converted to dt.
func (e *Engine) Upload(ctx context.Context, dt memory.DType, data []float32, shape ...int) (*memory.Tensor, error) {
	t, err := e.NewTensor(dt, shape...)
	if err != nil {
		return nil, err
	}
	if err := t.Upload(ctx, data); err != nil {
		t.Close()
		return nil, err
	}
	return t, nil
}

// usable returns ErrClosed for a nil or closed engine.
func (e *Engine) usable() error {
	if e == nil || e.closed.Load() {
		return ErrClosed
	}
	return nil
}

// Close releases everything the engine made, tensors included: their Closed reports true and
// using them is an error. It waits for calls in progress. Idempotent.
func (e *Engine) Close() {
	if e == nil {
		return
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.closed.Load() {
		return
	}
	e.closed.Store(true)
	e.dev.WaitIdle()
	for _, p := range e.pipes {
		p.pipe.Close()
	}
	e.pipes = nil
	e.seqBuf.Close()
	e.arrivals.Close()
	e.scratchPool.close()
	e.alloc.Close()
	e.dev.Close()
	e.inst.Close()
}

// compiled is a pipeline of the engine's cache with what it was made from.
type compiled struct {
	pipe *vk.Pipeline
	name string
	spec []uint32
}

// KernelStatistics are the driver's statistics of one compiled kernel.
type KernelStatistics struct {
	Kernel         string   // variant name
	Specialization []uint32 // its specialization constants (dtype, head dim, tiles, ...)
	Executables    []vk.Executable
}

// KernelStatistics returns the statistics of every kernel the engine has compiled, sorted by
// kernel and specialization. The engine must be made with Config.PipelineStatistics on a device
// that reports them.
func (e *Engine) KernelStatistics() ([]KernelStatistics, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.closed.Load() {
		return nil, ErrClosed
	}
	var out []KernelStatistics
	for _, k := range slices.Sorted(maps.Keys(e.pipes)) {
		p := e.pipes[k]
		exes, err := p.pipe.Executables()
		if err != nil {
			return nil, fmt.Errorf("attention: %w", err)
		}
		out = append(out, KernelStatistics{Kernel: p.name, Specialization: p.spec, Executables: exes})
	}
	return out, nil
}

// pipeline returns the cached pipeline for a variant and specialization.
func (e *Engine) pipeline(spec vk.PipelineSpec) (*vk.Pipeline, error) {
	key := fmt.Sprint(spec.Name, spec.Specialization, spec.SubgroupSize)
	if p, ok := e.pipes[key]; ok {
		return p.pipe, nil
	}
	p, err := e.dev.NewPipeline(spec)
	if err != nil {
		return nil, err
	}
	e.pipes[key] = &compiled{pipe: p, name: spec.Name, spec: slices.Clone(spec.Specialization)}
	return p, nil
}

// seqLens writes one sequence table (cumulative lengths, then a kernel's words) to the engine's
// small host-visible buffer; see seqTables.
func (e *Engine) seqLens(words []uint32) (*memory.Buffer, error) {
	b, _, err := e.seqTables([][]uint32{words})
	return b, err
}

// seqTables writes sequence tables to the engine's small host-visible buffer (memory.Mapped:
// device-local where the device lets the host map such memory, so that the kernels' reads of
// their tables, once a workgroup and for paged K/V once a tile, do not cross the bus), each at
// an offset (returned) aligned for binding, growing the buffer only when a call needs more than
// any before.
// e.mu is held: the buffer serves the call in flight.
func (e *Engine) seqTables(tables [][]uint32) (*memory.Buffer, []uint64, error) {
	align := max(e.profile.MinStorageBufferAlignment, 4)
	offs := make([]uint64, len(tables))
	need := uint64(0)
	for i, t := range tables {
		offs[i] = (need + align - 1) / align * align
		need = offs[i] + uint64(4*len(t))
	}
	if e.seqBuf == nil || e.seqBuf.Size() < need {
		e.seqBuf.Close()
		e.seqBuf = nil
		b, err := e.alloc.NewBuffer(smallBufferSize(need), memory.Mapped)
		if err != nil {
			return nil, nil, err
		}
		e.seqBuf = b
	}
	raw := e.seqBuf.Bytes()
	for i, t := range tables {
		out := raw[offs[i]:]
		for j, w := range t {
			binary.LittleEndian.PutUint32(out[4*j:], w)
		}
	}
	return e.seqBuf, offs, nil
}

// arrivalCounts returns the counters of decode.comp's merge in the last workgroup of each block
// (MERGE_LAST), at least words of them, all zero: zeroed on the device when the buffer is made,
// and left zero by every dispatch that counts in them (its last workgroups reset them). e.mu is
// held.
func (e *Engine) arrivalCounts(words uint64) (*memory.Buffer, error) {
	if e.arrivals != nil && e.arrivals.Size() >= 4*words {
		return e.arrivals, nil
	}
	size := smallBufferSize(4 * words)
	b, err := e.alloc.NewBuffer(size, memory.DeviceLocal)
	if err != nil {
		return nil, fmt.Errorf("attention: decode arrival counts (%d bytes): %w", size, err)
	}
	err = e.dev.Run(context.Background(), func(c *vk.Commands) error {
		c.Fill(b.Buffer, 0, size, 0)
		c.Barrier()
		return nil
	})
	if err != nil {
		b.Close()
		return nil, fmt.Errorf("attention: zeroing decode arrival counts: %w", err)
	}
	e.arrivals.Close()
	e.arrivals = b
	return b, nil
}

// smallBufferSize is the size the engine gives a small buffer of its own that holds need bytes:
// 4 KiB doubled until it does, so that a buffer grows only O(log) times over the calls.
func smallBufferSize(need uint64) uint64 {
	size := uint64(4096)
	for size < need {
		size *= 2
	}
	return size
}
