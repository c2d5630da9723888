package vk

/*
#include <stdlib.h>
#include "cvk.h"
*/
import "C"

import (
	"fmt"
	"runtime"
	"unsafe"

	vk "github.com/goki/vulkan"
)

// chain is a pNext chain of Vulkan structures in C memory. Each link is one of the structures
// declared in cvk.h (with the specification's member layout, checked there by _Static_assert),
// allocated with its C size and read and written through its C type by link. This is how vk
// reaches structures the binding lacks or that are newer than its headers, with no Vulkan
// headers at build time.
type chain struct {
	links []unsafe.Pointer
	sizes []uintptr
}

// add appends a zeroed structure of size bytes (a C.sizeof_vkattn_... value) with the given
// sType and returns its index.
func (c *chain) add(sType uint32, size C.size_t) int {
	p := C.calloc(1, size)
	base := (*C.vkattn_base_out)(p)
	base.sType = C.vkattn_stype(sType)
	if n := len(c.links); n > 0 {
		(*C.vkattn_base_out)(c.links[n-1]).pNext = base
	}
	c.links = append(c.links, p)
	c.sizes = append(c.sizes, uintptr(size))
	return len(c.links) - 1
}

// head is the first structure, to pass to the query or as a pNext.
func (c *chain) head() unsafe.Pointer {
	if len(c.links) == 0 {
		return nil
	}
	return c.links[0]
}

// link returns link i as a *T, T being the cvk.h type it was added with; it panics if the link
// was allocated smaller than T.
func link[T any](c *chain, i int) *T {
	var zero T
	if unsafe.Sizeof(zero) > c.sizes[i] {
		panic(fmt.Sprintf("vk: chain link %d is %d bytes, read as %T of %d", i, c.sizes[i], zero, unsafe.Sizeof(zero)))
	}
	return (*T)(c.links[i])
}

func (c *chain) free() {
	for _, p := range c.links {
		C.free(p)
	}
	c.links, c.sizes = nil, nil
}

// cbool converts a VkBool32.
func cbool(b C.vkattn_bool32) bool { return b != 0 }

// cstring reads a NUL-terminated char array, all of it when it has no NUL.
func cstring(b []C.char) string {
	s := unsafe.Slice((*byte)(unsafe.Pointer(&b[0])), len(b))
	for j, x := range s {
		if x == 0 {
			return string(s[:j])
		}
	}
	return string(s)
}

// cstrings copies names into C memory as an array of NUL-terminated strings (nil for none) and
// returns it with the function that frees it.
func cstrings(names []string) (**C.char, func()) {
	if len(names) == 0 {
		return nil, func() {}
	}
	arr := unsafe.Slice((**C.char)(C.calloc(C.size_t(len(names)), C.size_t(unsafe.Sizeof((*C.char)(nil))))), len(names))
	for i, n := range names {
		arr[i] = C.CString(n)
	}
	return &arr[0], func() {
		for _, p := range arr {
			C.free(unsafe.Pointer(p))
		}
		C.free(unsafe.Pointer(&arr[0]))
	}
}

// whilePinned runs call with the Go memory of s pinned (runtime.Pinner), for calls through the
// binding whose C copy of a structure points to s; an empty s pins nothing.
func whilePinned[T any](s []T, call func()) {
	var pin runtime.Pinner
	if len(s) > 0 {
		pin.Pin(&s[0])
	}
	defer pin.Unpin()
	call()
}

// enumerate runs the two-call Vulkan enumeration fn of output structures (each starting with
// sType and pNext): call(&n, nil) for the count, then call(&n, p) into n zeroed C structures of
// type T with sType set. It returns copies of the structures filled; call returns a VkResult.
func enumerate[T any](fn string, sType uint32, call func(n *C.uint32_t, p *T) C.int32_t) ([]T, error) {
	return enumerateC(fn, func(p *T) { (*C.vkattn_base_out)(unsafe.Pointer(p)).sType = C.vkattn_stype(sType) }, call)
}

// enumeratePlain is enumerate for structures without sType. vk lists layers, extensions and
// queue families with it, not through the binding, whose wrappers hand the driver C arrays that
// a finalizer may free while the driver fills them.
func enumeratePlain[T any](fn string, call func(n *C.uint32_t, p *T) C.int32_t) ([]T, error) {
	return enumerateC(fn, nil, call)
}

// enumerateC is enumerate with init, if not nil, preparing each zeroed structure. The structures
// the driver fills are C memory of ours, alive until the copies are made.
func enumerateC[T any](fn string, init func(*T), call func(n *C.uint32_t, p *T) C.int32_t) ([]T, error) {
	var n C.uint32_t
	if err := result(fn, vk.Result(call(&n, nil))); err != nil || n == 0 {
		return nil, err
	}
	var zero T
	mem := C.calloc(C.size_t(n), C.size_t(unsafe.Sizeof(zero)))
	defer C.free(mem)
	items := unsafe.Slice((*T)(mem), int(n))
	if init != nil {
		for i := range items {
			init(&items[i])
		}
	}
	// VK_INCOMPLETE: more items appeared between the calls; the n written are whole.
	if r := vk.Result(call(&n, &items[0])); r != vk.Incomplete {
		if err := result(fn, r); err != nil {
			return nil, err
		}
	}
	return append([]T(nil), items[:min(int(n), len(items))]...), nil
}

// enumerateProbe runs enumerate over a fake enumeration of have structures that answers
// firstResult to the count call and secondResult to the fill call, returning the sTypes read back
// (tests of enumerate, which need C types that test files cannot name).
func enumerateProbe(have int, firstResult, secondResult vk.Result) ([]uint32, error) {
	items, err := enumerate("vkFake", 77, func(n *C.uint32_t, p *C.vkattn_base_out) C.int32_t {
		if p == nil {
			*n = C.uint32_t(have)
			return C.int32_t(firstResult)
		}
		*n = min(*n, C.uint32_t(have))
		return C.int32_t(secondResult)
	})
	var out []uint32
	for _, it := range items {
		out = append(out, uint32(it.sType))
	}
	return out, err
}
