package vk

/*
#include "cvk.h"
*/
import "C"

import (
	"context"
	"fmt"
	"time"
	"unsafe"

	vk "github.com/goki/vulkan"
)

// Commands records work into a command buffer; see Device.Run.
type Commands struct {
	dev   *Device
	cb    vk.CommandBuffer
	err   error
	after []TimelinePoint // what the submission waits for (After)
}

// Dispatch binds the set's pipeline and buffers, pushes constants and dispatches x*y*z workgroups.
func (c *Commands) Dispatch(set *DescriptorSet, push []byte, x, y, z uint32) {
	p := set.pipe
	if uint32(len(push)) != p.pushSize {
		c.fail(fmt.Errorf("vk: pipeline %s takes %d bytes of push constants, got %d", p.name, p.pushSize, len(push)))
		return
	}
	lim := c.dev.info.MaxWorkgroupCount
	if x == 0 || y == 0 || z == 0 || x > lim[0] || y > lim[1] || z > lim[2] {
		c.fail(fmt.Errorf("vk: pipeline %s: grid %dx%dx%d outside the device's limits %v", p.name, x, y, z, lim))
		return
	}
	if len(set.after) > 0 {
		c.After(set.after...)
	}
	vk.CmdBindPipeline(c.cb, vk.PipelineBindPointCompute, p.handle)
	vk.CmdBindDescriptorSets(c.cb, vk.PipelineBindPointCompute, p.layout, 0, 1, []vk.DescriptorSet{set.handle}, 0, nil)
	if len(push) > 0 {
		vk.CmdPushConstants(c.cb, p.layout, vk.ShaderStageFlags(vk.ShaderStageComputeBit), 0, uint32(len(push)), unsafe.Pointer(&push[0]))
	}
	vk.CmdDispatch(c.cb, x, y, z)
}

// Barrier makes all earlier compute and transfer writes visible to later compute and transfer
// work.
func (c *Commands) Barrier() {
	stages := uint32(vk.PipelineStageComputeShaderBit | vk.PipelineStageTransferBit)
	access := uint32(vk.AccessShaderReadBit | vk.AccessShaderWriteBit | vk.AccessTransferReadBit | vk.AccessTransferWriteBit)
	c.memoryBarrier(stages, stages, access, access)
}

// ComputeBarrier makes earlier compute shader writes visible to later compute shaders, and
// only that: between dispatches that read what the one before wrote, where Barrier would also
// wait for transfers.
func (c *Commands) ComputeBarrier() {
	stage := uint32(vk.PipelineStageComputeShaderBit)
	c.memoryBarrier(stage, stage, uint32(vk.AccessShaderWriteBit), uint32(vk.AccessShaderReadBit|vk.AccessShaderWriteBit))
}

// HostBarrier makes earlier device writes visible to host reads after the submission completes.
func (c *Commands) HostBarrier() {
	c.memoryBarrier(uint32(vk.PipelineStageComputeShaderBit|vk.PipelineStageTransferBit), uint32(vk.PipelineStageHostBit),
		uint32(vk.AccessShaderWriteBit|vk.AccessTransferWriteBit), uint32(vk.AccessHostReadBit))
}

// memoryBarrier records one global memory barrier. It and Copy record through the C layer: the
// binding's CmdPipelineBarrier and CmdCopyBuffer pass C copies of their slices that its
// finalizers may free while the driver still reads them.
func (c *Commands) memoryBarrier(srcStages, dstStages, srcAccess, dstAccess uint32) {
	if c.dev.fn.cmdPipelineBarrier == nil {
		c.fail(fmt.Errorf("vk: %s has no vkCmdPipelineBarrier", c.dev.info.Name))
		return
	}
	C.vkattn_cmd_memory_barrier(c.dev.fn.cmdPipelineBarrier, C.vkattn_dispatchable(unsafe.Pointer(c.cb)),
		C.uint32_t(srcStages), C.uint32_t(dstStages), C.uint32_t(srcAccess), C.uint32_t(dstAccess))
}

// Copy copies size bytes between buffers.
func (c *Commands) Copy(src *Buffer, srcOff uint64, dst *Buffer, dstOff uint64, size uint64) {
	if c.dev.fn.cmdCopyBuffer == nil {
		c.fail(fmt.Errorf("vk: %s has no vkCmdCopyBuffer", c.dev.info.Name))
		return
	}
	C.vkattn_cmd_copy_buffer(c.dev.fn.cmdCopyBuffer, C.vkattn_dispatchable(unsafe.Pointer(c.cb)),
		handle64(unsafe.Pointer(src.handle)), handle64(unsafe.Pointer(dst.handle)), C.uint64_t(srcOff), C.uint64_t(dstOff), C.uint64_t(size))
}

// Fill writes the 32-bit value over size bytes (a multiple of 4) of buf at off.
func (c *Commands) Fill(buf *Buffer, off, size uint64, value uint32) {
	vk.CmdFillBuffer(c.cb, buf.handle, vk.DeviceSize(off), vk.DeviceSize(size), value)
}

// ResetQueries resets all queries of the pool.
func (c *Commands) ResetQueries(q *QueryPool) { vk.CmdResetQueryPool(c.cb, q.handle, 0, q.count) }

// Timestamp writes query i once all earlier commands have completed.
func (c *Commands) Timestamp(q *QueryPool, i uint32) {
	vk.CmdWriteTimestamp(c.cb, vk.PipelineStageBottomOfPipeBit, q.handle, i)
}

func (c *Commands) fail(err error) {
	if c.err == nil {
		c.err = err
	}
}

// Run records the commands that record issues into a fresh command buffer, submits them to the
// compute queue, waiting first for the timeline points given to Commands.After (and to the
// descriptor sets dispatched), and waits for them to finish. Nothing is submitted if record
// reports an error or ctx is already done. The compute queue's lock is held while recording and
// submitting, not while waiting, so other work (sparse binds on the compute queue included) can
// be submitted meanwhile.
func (d *Device) Run(ctx context.Context, record func(*Commands) error) error {
	if d.closed {
		return ErrClosed
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	if d.fn.queueSubmit == nil {
		return fmt.Errorf("vk: vkQueueSubmit not found: %w", ErrInitialization)
	}
	d.mu.Lock()
	locked := true
	defer func() {
		if locked {
			d.mu.Unlock()
		}
	}()
	ai := &vk.CommandBufferAllocateInfo{SType: vk.StructureTypeCommandBufferAllocateInfo, CommandPool: d.cmdPool,
		Level: vk.CommandBufferLevelPrimary, CommandBufferCount: 1}
	cbs := make([]vk.CommandBuffer, 1)
	r := vk.AllocateCommandBuffers(d.handle, ai, cbs)
	ai.Free()
	if err := result("vkAllocateCommandBuffers", r); err != nil {
		return err
	}
	defer func() { // runs before the unlock above: the pool needs the lock
		if !locked {
			d.mu.Lock()
			locked = true
		}
		vk.FreeCommandBuffers(d.handle, d.cmdPool, 1, cbs)
	}()
	bi := &vk.CommandBufferBeginInfo{SType: vk.StructureTypeCommandBufferBeginInfo,
		Flags: vk.CommandBufferUsageFlags(vk.CommandBufferUsageOneTimeSubmitBit)}
	r = vk.BeginCommandBuffer(cbs[0], bi)
	bi.Free()
	if err := result("vkBeginCommandBuffer", r); err != nil {
		return err
	}
	c := &Commands{dev: d, cb: cbs[0]}
	if err := record(c); err != nil {
		vk.EndCommandBuffer(cbs[0])
		return err
	}
	if err := result("vkEndCommandBuffer", vk.EndCommandBuffer(cbs[0])); err != nil {
		return err
	}
	if c.err != nil {
		return c.err
	}
	fci := &vk.FenceCreateInfo{SType: vk.StructureTypeFenceCreateInfo}
	var fence vk.Fence
	r = vk.CreateFence(d.handle, fci, nil, &fence)
	fci.Free()
	if err := result("vkCreateFence", r); err != nil {
		return err
	}
	defer vk.DestroyFence(d.handle, fence, nil)
	sems := make([]C.uint64_t, len(c.after)+1)
	values := make([]C.uint64_t, len(c.after)+1)
	for i, p := range c.after {
		sems[i], values[i] = p.Timeline.handle, C.uint64_t(p.Value)
	}
	rc := C.vkattn_queue_submit(d.fn.queueSubmit, C.vkattn_dispatchable(unsafe.Pointer(d.queue)),
		C.vkattn_dispatchable(unsafe.Pointer(cbs[0])), C.uint32_t(len(c.after)), &sems[0], &values[0],
		C.uint64_t(uintptr(unsafe.Pointer(fence))))
	if err := result("vkQueueSubmit", vk.Result(rc)); err != nil {
		return err
	}
	d.mu.Unlock()
	locked = false
	for {
		r := vk.WaitForFences(d.handle, 1, []vk.Fence{fence}, vk.True, uint64(time.Second))
		if r == vk.Timeout {
			continue // the work cannot be abandoned once submitted: its buffers are in use
		}
		return result("vkWaitForFences", r)
	}
}

// QueryPool holds timestamp queries.
type QueryPool struct {
	dev    *Device
	handle vk.QueryPool
	count  uint32
}

// NewTimestamps creates a pool of n timestamp queries.
func (d *Device) NewTimestamps(n uint32) (*QueryPool, error) {
	if d.closed {
		return nil, ErrClosed
	}
	if d.info.TimestampBits == 0 {
		return nil, fmt.Errorf("vk: %s: the compute queue has no timestamps", d.info.Name)
	}
	ci := &vk.QueryPoolCreateInfo{SType: vk.StructureTypeQueryPoolCreateInfo, QueryType: vk.QueryTypeTimestamp, QueryCount: n}
	q := &QueryPool{dev: d, count: n}
	var h vk.QueryPool
	r := vk.CreateQueryPool(d.handle, ci, nil, &h)
	ci.Free()
	q.handle = h
	if err := result("vkCreateQueryPool", r); err != nil {
		return nil, err
	}
	return q, nil
}

// Elapsed returns the time between queries i and j of completed work.
func (q *QueryPool) Elapsed(i, j uint32) (time.Duration, error) {
	ts := make([]uint64, q.count)
	r := vk.GetQueryPoolResults(q.dev.handle, q.handle, 0, q.count, uint64(8*q.count), unsafe.Pointer(&ts[0]), 8,
		vk.QueryResultFlags(vk.QueryResult64Bit|vk.QueryResultWaitBit))
	if err := result("vkGetQueryPoolResults", r); err != nil {
		return 0, err
	}
	mask := ^uint64(0)
	if b := q.dev.info.TimestampBits; b < 64 {
		mask = 1<<b - 1
	}
	ticks := (ts[j] - ts[i]) & mask
	return time.Duration(float64(ticks) * float64(q.dev.info.TimestampPeriod)), nil
}

// Close destroys the pool.
func (q *QueryPool) Close() {
	if q == nil || q.handle == vk.NullQueryPool {
		return
	}
	vk.DestroyQueryPool(q.dev.handle, q.handle, nil)
	q.handle = vk.NullQueryPool
}
