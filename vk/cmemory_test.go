package vk_test

import (
	"context"
	"encoding/binary"
	"runtime"
	"slices"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"
	"github.com/vkattn/vkattn/internal/testenv"
	"github.com/vkattn/vkattn/vk"
)

// collectMeanwhile collects garbage without pause on another goroutine until the test ends.
func collectMeanwhile(t *testing.T) {
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			select {
			case <-stop:
				return
			default:
				runtime.GC()
			}
		}
	}()
	t.Cleanup(func() { close(stop); wg.Wait() })
}

// TestCallsBesideGC makes descriptor sets and records copies and barriers while another
// goroutine collects garbage without pause: the arrays of structures these calls hand to the
// driver and the validation layer must stay alive until the calls return, whatever the collector
// does meanwhile. (Through the binding, whose finalizers free its C copies of them, it crashed in
// vkUpdateDescriptorSets and in lavapipe's queue thread within a few runs.)
func TestCallsBesideGC(t *testing.T) {
	in, d := openDevice(t)
	const bindings = 8
	p, err := d.NewPipeline(vk.PipelineSpec{Name: "empty", SPIRV: emptyCompute(), Bindings: bindings})
	require.NoError(t, err)
	defer p.Close()
	var bufs [bindings]*vk.Buffer
	for i := range bufs {
		bufs[i], err = d.NewBuffer(256)
		require.NoError(t, err)
		defer bufs[i].Close()
	}
	var host vk.MemoryType
	for _, mt := range d.MemoryTypes() {
		if mt.Flags&vk.MemoryHostVisible != 0 {
			host = mt
			break
		}
	}
	m, err := d.Allocate(256*bindings, host)
	require.NoError(t, err)
	defer m.Close()
	for i, b := range bufs {
		require.NoError(t, b.Bind(m, uint64(256*i)))
	}
	ranges := make([]vk.BufferRange, bindings)
	for i, b := range bufs {
		ranges[i] = vk.BufferRange{Buffer: b, Offset: 0, Size: 256}
	}

	collectMeanwhile(t)
	for range 20000 {
		set, err := p.NewDescriptorSet(ranges...)
		require.NoError(t, err)
		set.Close()
	}
	for range 20 {
		require.NoError(t, d.Run(context.Background(), func(c *vk.Commands) error {
			for i := range 2000 {
				c.Copy(bufs[i%bindings], 0, bufs[(i+1)%bindings], 0, 256)
				c.Barrier()
			}
			c.HostBarrier()
			return nil
		}))
	}
	testenv.CheckValidation(t, in)
}

// TestStartupBesideGC lists layers and devices (with their extensions and queue families) and
// opens devices while another goroutine collects garbage without pause: the arrays the driver
// fills must stay alive until the calls return, and every listing must read the same. (Through
// the binding, whose finalizers free its C arrays for these listings, the driver wrote layer
// names into freed memory and the process died in malloc or free within a few runs.)
func TestStartupBesideGC(t *testing.T) {
	in := testenv.Instance(t)
	layer := vk.LayerAvailable(vk.ValidationLayer)
	first, err := in.PhysicalDevices()
	require.NoError(t, err)
	if len(first) == 0 {
		testenv.NoDevice(t, vk.ErrNoDevice)
	}

	collectMeanwhile(t)
	for range 300 {
		require.Equal(t, layer, vk.LayerAvailable(vk.ValidationLayer))
		infos, err := in.PhysicalDevices()
		require.NoError(t, err)
		require.Len(t, infos, len(first))
		for i := range infos {
			require.Equal(t, first[i].Extensions, infos[i].Extensions)
			require.Equal(t, first[i].ComputeFamily, infos[i].ComputeFamily)
			require.Equal(t, first[i].TimestampBits, infos[i].TimestampBits)
		}
	}
	for range 50 {
		d, err := in.OpenDevice(0, vk.DeviceOptions{})
		require.NoError(t, err)
		d.Close()
	}
	testenv.CheckValidation(t, in)
}

// TestCreateBesideGC creates instances, devices, pipelines (with their set and pipeline
// layouts), descriptor pools and timelines, and runs a dispatch of each pipeline after a
// timeline point, while another goroutine collects garbage without pause: the arrays of the
// create infos (layer and extension names, queue create infos, layout bindings, push constant
// ranges, pool sizes) must be read whole, so that every object is made as asked, and each
// dispatch must store its push constant plus its pipeline's specialization constant. It checks
// the C layer's create infos under collection; it is no reproducer of the binding's window (a
// finalizer owned the C copy of each such array until the create info's own copy took it over),
// which it never hit.
func TestCreateBesideGC(t *testing.T) {
	in0 := testenv.Instance(t)
	validation := in0.Validation()
	type bindQueue struct {
		family   int
		separate bool
	}
	var queues [2]bindQueue // of a device without and with SharedBindQueue
	for shared := range queues {
		d := openDeviceWith(t, in0, vk.DeviceOptions{SharedBindQueue: shared == 1})
		queues[shared].family, queues[shared].separate = d.BindQueue()
		d.Close()
	}

	collectMeanwhile(t)
	ctx := context.Background()
	for i := range 6 {
		in, err := vk.NewInstance(vk.InstanceOptions{Validation: validation})
		require.NoError(t, err)
		require.Equal(t, validation, in.Validation())
		d, err := in.OpenDevice(0, vk.DeviceOptions{SharedBindQueue: i%2 == 1})
		require.NoError(t, err)
		var q bindQueue
		q.family, q.separate = d.BindQueue()
		require.Equal(t, queues[i%2], q)
		var tl *vk.Timeline
		if d.TimelineSemaphores() == nil {
			tl, err = d.NewTimeline(0)
			require.NoError(t, err)
		}

		const pipes, stride = 6, 256
		buf, err := d.NewBuffer(pipes * stride)
		require.NoError(t, err)
		_, _, bits := buf.Requirements()
		mem, err := d.Allocate(pipes*stride, memoryType(t, d, bits, vk.MemoryHostVisible|vk.MemoryHostCoherent))
		require.NoError(t, err)
		require.NoError(t, buf.Bind(mem, 0))
		// Every pipeline has sets kept to the end, more than a descriptor pool holds, so that
		// the pools grow.
		var pipelines []*vk.Pipeline
		var sets []*vk.DescriptorSet
		for k := range pipes {
			p, err := d.NewPipeline(vk.PipelineSpec{Name: "store", SPIRV: storeCompute(), Bindings: 1 + k,
				PushSize: uint32(4 + 4*k), Specialization: []uint32{uint32(1000 * k)}})
			require.NoError(t, err)
			pipelines = append(pipelines, p)
			ranges := make([]vk.BufferRange, 1+k)
			for j := range ranges {
				ranges[j] = vk.BufferRange{Buffer: buf, Offset: uint64(stride * k), Size: stride}
			}
			for range 300 {
				set, err := p.NewDescriptorSet(ranges...)
				require.NoError(t, err)
				sets = append(sets, set)
			}
			push := make([]byte, 4+4*k)
			binary.LittleEndian.PutUint32(push, uint32(i))
			if tl != nil {
				require.NoError(t, tl.Signal(uint64(k+1)))
			}
			require.NoError(t, d.Run(ctx, func(c *vk.Commands) error {
				if tl != nil {
					c.After(vk.TimelinePoint{Timeline: tl, Value: uint64(k + 1)})
				}
				c.Dispatch(sets[len(sets)-1], push, 1, 1, 1)
				c.HostBarrier()
				return nil
			}))
			require.Equal(t, uint32(1000*k+i), binary.LittleEndian.Uint32(mem.Bytes(uint64(stride*k), 4)), "pipeline %d", k)
		}
		for _, s := range sets {
			s.Close()
		}
		for _, p := range pipelines {
			p.Close()
		}
		buf.Close()
		mem.Close()
		tl.Close()
		d.Close()
		testenv.CheckValidation(t, in)
		in.Close()
	}
}

// storeCompute is the SPIR-V of a compute shader that stores its first word of push constants
// plus specialization constant 0 into the first word of binding 0:
//
//	layout(local_size_x = 1) in;
//	layout(constant_id = 0) const uint SPEC = 0;
//	layout(push_constant) uniform P { uint v; } pc;
//	layout(binding = 0) buffer Out { uint w[]; } o;
//	void main() { o.w[0] = pc.v + SPEC; }
func storeCompute() []byte {
	const (
		fnMain = 1 + iota
		tVoid
		tFn
		tUint
		spec
		tArr
		tOut
		pOut
		out
		tPush
		pPush
		push
		tInt
		zero
		pPushUint
		pOutUint
		label
		addr
		value
		sum
		dst
		bound
	)
	const uniform, pushConstant = 2, 9 // storage classes
	op := func(code uint32, operands ...uint32) []uint32 {
		return append([]uint32{uint32(len(operands)+1)<<16 | code}, operands...)
	}
	words := slices.Concat(
		[]uint32{0x07230203, 0x00010000, 0, bound, 0}, // magic, SPIR-V 1.0, generator, bound, schema
		op(17, 1),                              // OpCapability Shader
		op(14, 0, 1),                           // OpMemoryModel Logical GLSL450
		op(15, 5, fnMain, 0x6e69616d, 0),       // OpEntryPoint GLCompute "main"
		op(16, fnMain, 17, 1, 1, 1),            // OpExecutionMode LocalSize 1 1 1
		op(71, spec, 1, 0),                     // OpDecorate SpecId 0
		op(71, tArr, 6, 4),                     // OpDecorate ArrayStride 4
		op(72, tOut, 0, 35, 0),                 // OpMemberDecorate Offset 0
		op(71, tOut, 3),                        // OpDecorate BufferBlock
		op(71, out, 34, 0),                     // OpDecorate DescriptorSet 0
		op(71, out, 33, 0),                     // OpDecorate Binding 0
		op(72, tPush, 0, 35, 0),                // OpMemberDecorate Offset 0
		op(71, tPush, 2),                       // OpDecorate Block
		op(19, tVoid),                          // OpTypeVoid
		op(33, tFn, tVoid),                     // OpTypeFunction
		op(21, tUint, 32, 0),                   // OpTypeInt 32 unsigned
		op(50, tUint, spec, 0),                 // OpSpecConstant 0
		op(29, tArr, tUint),                    // OpTypeRuntimeArray
		op(30, tOut, tArr),                     // OpTypeStruct
		op(32, pOut, uniform, tOut),            // OpTypePointer
		op(59, pOut, out, uniform),             // OpVariable
		op(30, tPush, tUint),                   // OpTypeStruct
		op(32, pPush, pushConstant, tPush),     // OpTypePointer
		op(59, pPush, push, pushConstant),      // OpVariable
		op(21, tInt, 32, 1),                    // OpTypeInt 32 signed
		op(43, tInt, zero, 0),                  // OpConstant 0
		op(32, pPushUint, pushConstant, tUint), // OpTypePointer
		op(32, pOutUint, uniform, tUint),       // OpTypePointer
		op(54, tVoid, fnMain, 0, tFn),          // OpFunction
		op(248, label),                         // OpLabel
		op(65, pPushUint, addr, push, zero),    // OpAccessChain
		op(61, tUint, value, addr),             // OpLoad
		op(128, tUint, sum, value, spec),       // OpIAdd
		op(65, pOutUint, dst, out, zero, zero), // OpAccessChain
		op(62, dst, sum),                       // OpStore
		op(253),                                // OpReturn
		op(56),                                 // OpFunctionEnd
	)
	b := make([]byte, 4*len(words))
	for i, w := range words {
		binary.LittleEndian.PutUint32(b[4*i:], w)
	}
	return b
}
