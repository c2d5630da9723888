package vk

/*
#include <stdlib.h>
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

// deviceFuncs are the device-level entry points vk calls through its C layer (nil where the
// device lacks one).
type deviceFuncs struct {
	queueSubmit, bindSparse                                  C.vkattn_pfn
	createSemaphore, destroySemaphore, counter, wait, signal C.vkattn_pfn
	createComputePipelines                                   C.vkattn_pfn
	// Called through the C layer because the binding's wrappers hand the driver C copies of
	// their slice arguments, or of their create infos' nested arrays, that a finalizer may free
	// before the driver has read them.
	updateDescriptorSets, cmdPipelineBarrier, cmdCopyBuffer               C.vkattn_pfn
	createDescriptorSetLayout, createPipelineLayout, createDescriptorPool C.vkattn_pfn
}

func (d *Device) loadFuncs() {
	gdpa := instanceProc(d.inst.handle, "vkGetDeviceProcAddr")
	if gdpa == nil {
		return
	}
	dev := C.vkattn_dispatchable(unsafe.Pointer(d.handle))
	proc := func(name string) C.vkattn_pfn {
		cs := C.CString(name)
		defer C.free(unsafe.Pointer(cs))
		return C.vkattn_device_proc(gdpa, dev, cs)
	}
	d.fn = deviceFuncs{queueSubmit: proc("vkQueueSubmit"), bindSparse: proc("vkQueueBindSparse"),
		createSemaphore: proc("vkCreateSemaphore"), destroySemaphore: proc("vkDestroySemaphore"),
		counter: proc("vkGetSemaphoreCounterValue"), wait: proc("vkWaitSemaphores"), signal: proc("vkSignalSemaphore"),
		createComputePipelines: proc("vkCreateComputePipelines"), updateDescriptorSets: proc("vkUpdateDescriptorSets"),
		cmdPipelineBarrier: proc("vkCmdPipelineBarrier"), cmdCopyBuffer: proc("vkCmdCopyBuffer"),
		createDescriptorSetLayout: proc("vkCreateDescriptorSetLayout"), createPipelineLayout: proc("vkCreatePipelineLayout"),
		createDescriptorPool: proc("vkCreateDescriptorPool")}
}

// bindChoice is a queue for sparse binds: family -1 where none can bind.
type bindChoice struct{ family, index int }

// chooseBindQueue picks the queue sparse binds run on (pickBindQueue) from the device's queue
// families.
func (in *Instance) chooseBindQueue(phys vk.PhysicalDevice, compute int, sparse, shared bool) bindChoice {
	qs := in.queueFamilies(phys)
	fams := make([]queueFamily, len(qs))
	for i, q := range qs {
		fams[i] = queueFamily{binds: vk.QueueFlagBits(q.queueFlags)&vk.QueueSparseBindingBit != 0, queues: int(q.queueCount)}
	}
	return pickBindQueue(fams, compute, sparse, shared)
}

// queueFamily is what pickBindQueue needs of a queue family.
type queueFamily struct {
	binds  bool // SPARSE_BINDING
	queues int
}

// pickBindQueue picks the queue sparse binds run on, where the device has sparse binding: a
// second queue of the compute family if that family binds and has two, else a queue of another
// family that binds, else the compute queue itself if its family binds; none otherwise. With
// shared, the compute queue wherever its family binds.
func pickBindQueue(fams []queueFamily, compute int, sparse, shared bool) bindChoice {
	if !sparse || compute < 0 || compute >= len(fams) {
		return bindChoice{-1, 0}
	}
	binds := func(i int) bool { return fams[i].binds && fams[i].queues > 0 }
	own := binds(compute)
	if own && !shared && fams[compute].queues >= 2 {
		return bindChoice{compute, 1}
	}
	if !own || !shared {
		for i := range fams {
			if i != compute && binds(i) {
				return bindChoice{i, 0}
			}
		}
	}
	if own {
		return bindChoice{compute, 0}
	}
	return bindChoice{-1, 0}
}

// BindQueue says where sparse binds run: the queue family (-1 where no queue of the device can
// bind) and whether the queue is another than the compute queue that Run submits to. On another
// queue, binds and submissions are ordered only by the timeline points they signal and wait for.
func (d *Device) BindQueue() (family int, separate bool) {
	return d.bindFamily, d.bindFamily >= 0 && d.bindQueue != d.queue
}

// TimelineSemaphores reports whether the device has timeline semaphores (Vulkan 1.2): nil, or an
// error wrapping ErrFeatureMissing.
func (d *Device) TimelineSemaphores() error {
	if d.closed {
		return ErrClosed
	}
	if !d.info.Features.TimelineSemaphore || d.fn.createSemaphore == nil || d.fn.counter == nil || d.fn.wait == nil || d.fn.signal == nil {
		return fmt.Errorf("vk: %s lacks timeline semaphores: %w", d.info.Name, ErrFeatureMissing)
	}
	return nil
}

// Timeline is a timeline semaphore: a 64-bit counter that only grows, signalled by queue
// operations (SubmitBinds) or the host (Signal), and waited for by submissions (Commands.After)
// or the host (Wait). Its methods are safe for concurrent use; Close it before its device.
type Timeline struct {
	dev    *Device
	handle C.uint64_t
}

// TimelinePoint is a value of a timeline: reached once the counter is at least Value.
type TimelinePoint struct {
	Timeline *Timeline
	Value    uint64
}

// NewTimeline creates a timeline semaphore whose counter starts at initial.
func (d *Device) NewTimeline(initial uint64) (*Timeline, error) {
	if err := d.TimelineSemaphores(); err != nil {
		return nil, err
	}
	t := &Timeline{dev: d}
	r := C.vkattn_create_timeline(d.fn.createSemaphore, C.vkattn_dispatchable(unsafe.Pointer(d.handle)), C.uint64_t(initial), &t.handle)
	if err := result("vkCreateSemaphore (timeline)", vk.Result(r)); err != nil {
		return nil, err
	}
	return t, nil
}

func (t *Timeline) usable() error {
	if t == nil || t.handle == 0 || t.dev.closed {
		return ErrClosed
	}
	return nil
}

// Value is the counter's current value.
func (t *Timeline) Value() (uint64, error) {
	if err := t.usable(); err != nil {
		return 0, err
	}
	var v C.uint64_t
	r := C.vkattn_semaphore_value(t.dev.fn.counter, C.vkattn_dispatchable(unsafe.Pointer(t.dev.handle)), t.handle, &v)
	return uint64(v), result("vkGetSemaphoreCounterValue", vk.Result(r))
}

// Signal sets the counter to v from the host; v must exceed its value and every value a pending
// operation will signal.
func (t *Timeline) Signal(v uint64) error {
	if err := t.usable(); err != nil {
		return err
	}
	r := C.vkattn_signal_semaphore(t.dev.fn.signal, C.vkattn_dispatchable(unsafe.Pointer(t.dev.handle)), t.handle, C.uint64_t(v))
	return result("vkSignalSemaphore", vk.Result(r))
}

// Wait blocks until the counter reaches v, or ctx is done (its error is returned; nothing is
// left pending).
func (t *Timeline) Wait(ctx context.Context, v uint64) error {
	if err := t.usable(); err != nil {
		return err
	}
	dev := C.vkattn_dispatchable(unsafe.Pointer(t.dev.handle))
	for {
		step := 100 * time.Millisecond
		if ctx.Done() == nil {
			step = time.Second
		}
		r := vk.Result(C.vkattn_wait_semaphore(t.dev.fn.wait, dev, t.handle, C.uint64_t(v), C.uint64_t(step)))
		if r != vk.Timeout {
			return result("vkWaitSemaphores", r)
		}
		if err := ctx.Err(); err != nil {
			return err
		}
	}
}

// Close destroys the semaphore. Nothing pending may signal or wait for it. Idempotent.
func (t *Timeline) Close() {
	if t == nil || t.handle == 0 {
		return
	}
	if !t.dev.closed {
		C.vkattn_destroy_semaphore(t.dev.fn.destroySemaphore, C.vkattn_dispatchable(unsafe.Pointer(t.dev.handle)), t.handle)
	}
	t.handle = 0
}

// checkPoint checks that p is a point of a live timeline of the device.
func (d *Device) checkPoint(what string, p TimelinePoint) error {
	if p.Timeline == nil || p.Timeline.handle == 0 || p.Timeline.dev != d {
		return fmt.Errorf("vk: %s: not a live timeline of this device", what)
	}
	return nil
}

// mergePoints adds ps to to, one point per timeline (the largest value).
func mergePoints(to []TimelinePoint, ps ...TimelinePoint) []TimelinePoint {
next:
	for _, p := range ps {
		for i := range to {
			if to[i].Timeline == p.Timeline {
				to[i].Value = max(to[i].Value, p.Value)
				continue next
			}
		}
		to = append(to, p)
	}
	return to
}

// After makes the submission wait, before any of its commands, until every point is reached:
// for work that reads memory bound by SubmitBinds, which is not ordered otherwise.
func (c *Commands) After(points ...TimelinePoint) {
	for _, p := range points {
		if err := c.dev.checkPoint("wait", p); err != nil {
			c.fail(err)
			return
		}
	}
	c.after = mergePoints(c.after, points...)
}

// After makes every submission that dispatches the set wait until the points are reached, as
// Commands.After does: a set binding a sparse buffer's range carries the binds it needs.
func (s *DescriptorSet) After(points ...TimelinePoint) {
	s.after = mergePoints(s.after, points...)
}
