package vk

/*
#include <stdlib.h>
#include "cvk.h"
*/
import "C"

import (
	"fmt"
	"unsafe"
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
