// Package vk is vkattn's thin, safe layer over github.com/goki/vulkan for compute: instance,
// devices, buffers and memory, sparse buffers and their binds, compute pipelines, descriptor
// sets, command buffers, fences, timeline semaphores, timestamp queries and a pipeline cache. Every object has one owner and an idempotent Close;
// VkResult values become Go errors.
//
// Calls that hand the driver arrays of structures, or structures holding arrays of structures
// or strings, go through the package's C layer (cvk.h) with memory it allocates itself: the
// binding converts such arrays into C copies owned by finalizers, which a garbage collection
// during the call may run. The calls still made through the binding pass one structure in a C
// copy that no finalizer owns (a create info's is freed with Free after the call), Go memory as
// an argument (which cgo keeps alive through the call), or Go memory that such a C copy points to
// (queue family indices, SPIR-V code, set layouts, pipeline cache data), pinned
// (runtime.Pinner) for the call.
package vk

/*
#cgo linux LDFLAGS: -ldl
#include <stdlib.h>
#include "cvk.h"
*/
import "C"

import (
	"fmt"
	"os"
	"sync"
	"unsafe"

	vk "github.com/goki/vulkan"
)

// LibraryEnv names the environment variable that overrides the Vulkan loader library to dlopen.
const LibraryEnv = "VKATTN_VULKAN_LIB"

var (
	loadOnce sync.Once
	loadErr  error
)

// Load opens the Vulkan loader once per process: $VKATTN_VULKAN_LIB if set, else libvulkan.so.1
// (what runtime-only machines have), else libvulkan.so; and hands vkGetInstanceProcAddr to the
// binding.
func Load() error {
	loadOnce.Do(func() {
		names := []string{"libvulkan.so.1", "libvulkan.so"}
		if env := os.Getenv(LibraryEnv); env != "" {
			names = []string{env}
		}
		var tried []string
		for _, name := range names {
			cname := C.CString(name)
			var cerr *C.char
			p := C.vkattn_load(cname, &cerr)
			C.free(unsafe.Pointer(cname))
			if p != nil {
				vk.SetGetInstanceProcAddr(p)
				if err := vk.Init(); err != nil {
					loadErr = fmt.Errorf("vk: %s: %w", name, err)
				}
				return
			}
			tried = append(tried, fmt.Sprintf("%s (%s)", name, C.GoString(cerr)))
		}
		loadErr = fmt.Errorf("%w: could not load the Vulkan loader: tried %v; install libvulkan1 or set %s",
			ErrNoVulkan, tried, LibraryEnv)
	})
	return loadErr
}

// instanceProc resolves an instance-level (or global, with a nil instance) entry point.
func instanceProc(instance vk.Instance, name string) C.vkattn_pfn {
	cname := C.CString(name)
	defer C.free(unsafe.Pointer(cname))
	return C.vkattn_instance_proc(C.vkattn_dispatchable(unsafe.Pointer(instance)), cname)
}
