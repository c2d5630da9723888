package vk

/*
#include <stdlib.h>
#include "cvk.h"
*/
import "C"

import (
	"fmt"
	"runtime/cgo"
	"strings"
	"sync"
	"unsafe"

	vk "github.com/goki/vulkan"
)

// ValidationLayer is the Khronos validation layer's name.
const ValidationLayer = "VK_LAYER_KHRONOS_validation"

const extDebugUtils = "VK_EXT_debug_utils"

// APIVersion is the Vulkan version vkattn asks for: 1.3.
var APIVersion = vk.MakeVersion(1, 3, 0)

// Severity of a debug message.
type Severity uint32

// Severities, as the debug-utils extension numbers them.
const (
	SeverityInfo    Severity = 0x10
	SeverityWarning Severity = 0x100
	SeverityError   Severity = 0x1000
)

func (s Severity) String() string {
	switch {
	case s >= SeverityError:
		return "error"
	case s >= SeverityWarning:
		return "warning"
	default:
		return "info"
	}
}

// Message is one message of the validation layer or the driver.
type Message struct {
	Severity Severity
	ID       string
	Text     string
}

func (m Message) String() string { return fmt.Sprintf("%s: %s: %s", m.Severity, m.ID, m.Text) }

// InstanceOptions configure NewInstance.
type InstanceOptions struct {
	// Validation enables VK_LAYER_KHRONOS_validation and a VK_EXT_debug_utils messenger that
	// collects its errors; NewInstance fails if the layer is not installed or the messenger cannot
	// be created.
	Validation bool
	// OnMessage, if set, receives every warning and error message (debug-utils) as it happens;
	// without Validation it is best-effort: no messages arrive where debug-utils is missing.
	OnMessage func(Message)
}

// Instance owns a VkInstance and, with validation, its debug messenger.
type Instance struct {
	handle     vk.Instance
	validation bool
	onMessage  func(Message)
	self       cgo.Handle
	messenger  C.uint64_t

	mu     sync.Mutex
	errors []Message
	closed bool
}

// LayerAvailable reports whether an instance layer is installed.
func LayerAvailable(name string) bool {
	if Load() != nil {
		return false
	}
	fn := "vkEnumerateInstanceLayerProperties"
	f := instanceProc(nil, fn)
	if f == nil {
		return false
	}
	props, err := enumeratePlain(fn, func(n *C.uint32_t, p *C.vkattn_layer_properties) C.int32_t {
		return C.vkattn_enumerate_instance_layers(f, n, p)
	})
	if err != nil {
		return false
	}
	for _, p := range props {
		if cstring(p.layerName[:]) == name {
			return true
		}
	}
	return false
}

// instanceExtensionAvailable reports whether an instance extension is provided by the loader and
// drivers (layer "") or by the named layer.
func instanceExtensionAvailable(layer, name string) bool {
	fn := "vkEnumerateInstanceExtensionProperties"
	f := instanceProc(nil, fn)
	if f == nil {
		return false
	}
	var clayer *C.char
	if layer != "" {
		clayer = C.CString(layer)
		defer C.free(unsafe.Pointer(clayer))
	}
	props, err := enumeratePlain(fn, func(n *C.uint32_t, p *C.vkattn_extension_properties) C.int32_t {
		return C.vkattn_enumerate_instance_extensions(f, clayer, n, p)
	})
	if err != nil {
		return false
	}
	for _, p := range props {
		if cstring(p.extensionName[:]) == name {
			return true
		}
	}
	return false
}

// NewInstance loads Vulkan and creates an instance for compute.
func NewInstance(opts InstanceOptions) (*Instance, error) {
	if err := Load(); err != nil {
		return nil, err
	}
	var layers, exts []string
	if opts.Validation {
		if !LayerAvailable(ValidationLayer) {
			return nil, fmt.Errorf("vk: validation requested but %s is not installed (Debian: vulkan-validationlayers): %w",
				ValidationLayer, ErrLayerMissing)
		}
		layers = append(layers, ValidationLayer)
	}
	// With validation, messages are how errors are reported, so no messenger is an error; with
	// only OnMessage, driver messages are best-effort.
	debug := opts.Validation || opts.OnMessage != nil
	switch {
	case debug && (instanceExtensionAvailable("", extDebugUtils) ||
		opts.Validation && instanceExtensionAvailable(ValidationLayer, extDebugUtils)):
		exts = append(exts, extDebugUtils)
	case opts.Validation:
		return nil, fmt.Errorf("vk: validation requested but %s is not available, so its errors could not be reported: %w",
			extDebugUtils, ErrExtensionMissing)
	default:
		debug = false
	}
	h, err := createInstance(layers, exts)
	if err != nil {
		return nil, err
	}
	if err := vk.InitInstance(h); err != nil {
		vk.DestroyInstance(h, nil)
		return nil, fmt.Errorf("vk: %w", err)
	}
	in := &Instance{handle: h, validation: opts.Validation, onMessage: opts.OnMessage}
	if debug {
		if err := in.createMessenger(); err != nil && opts.Validation {
			vk.DestroyInstance(h, nil)
			return nil, fmt.Errorf("vk: validation requested but its messages cannot be received: %w", err)
		}
	}
	return in, nil
}

// createInstance makes the VkInstance through the C layer: the binding's CreateInstance converts
// the name arrays into C copies that its finalizers may free before the call has read them.
func createInstance(layers, exts []string) (vk.Instance, error) {
	fn := "vkCreateInstance"
	f := instanceProc(nil, fn)
	if f == nil {
		return nil, fmt.Errorf("vk: the loader has no %s", fn)
	}
	app := C.CString("vkattn")
	defer C.free(unsafe.Pointer(app))
	cl, freeLayers := cstrings(layers)
	defer freeLayers()
	ce, freeExts := cstrings(exts)
	defer freeExts()
	var h C.vkattn_dispatchable
	r := C.vkattn_create_instance(f, app, C.uint32_t(APIVersion), C.uint32_t(len(layers)), cl, C.uint32_t(len(exts)), ce, &h)
	if err := result(fn, vk.Result(r)); err != nil {
		return nil, err
	}
	return vk.Instance(h), nil
}

// createMessenger installs the debug-utils messenger that feeds ValidationErrors and OnMessage.
func (in *Instance) createMessenger() error {
	create := instanceProc(in.handle, "vkCreateDebugUtilsMessengerEXT")
	if create == nil {
		return fmt.Errorf("vkCreateDebugUtilsMessengerEXT not found: %w", ErrExtensionMissing)
	}
	if instanceProc(in.handle, "vkDestroyDebugUtilsMessengerEXT") == nil {
		return fmt.Errorf("vkDestroyDebugUtilsMessengerEXT not found: %w", ErrExtensionMissing)
	}
	in.self = cgo.NewHandle(in)
	var messenger C.uint64_t
	if r := C.vkattn_create_messenger(create, C.vkattn_dispatchable(unsafe.Pointer(in.handle)),
		C.uintptr_t(in.self), &messenger); r != 0 {
		in.self.Delete()
		in.self = 0
		return result("vkCreateDebugUtilsMessengerEXT", vk.Result(r))
	}
	in.messenger = messenger
	return nil
}

//export vkattnDebugMessage
func vkattnDebugMessage(handle C.uintptr_t, severity, _ C.uint32_t, id, msg *C.char) {
	in := cgo.Handle(handle).Value().(*Instance)
	m := Message{Severity: Severity(severity), ID: C.GoString(id), Text: C.GoString(msg)}
	if m.Severity >= SeverityError {
		in.mu.Lock()
		in.errors = append(in.errors, m)
		in.mu.Unlock()
	}
	if in.onMessage != nil && m.Severity >= SeverityWarning {
		in.onMessage(m)
	}
}

// Validation reports whether the validation layer is on.
func (in *Instance) Validation() bool { return in.validation }

// ValidationErrors returns the error messages received so far and forgets them.
func (in *Instance) ValidationErrors() []Message {
	in.mu.Lock()
	defer in.mu.Unlock()
	e := in.errors
	in.errors = nil
	return e
}

// CheckValidation returns an error wrapping ErrValidation listing any error messages received
// since the last call.
func (in *Instance) CheckValidation() error {
	msgs := in.ValidationErrors()
	if len(msgs) == 0 {
		return nil
	}
	var b strings.Builder
	for _, m := range msgs {
		b.WriteString("\n  ")
		b.WriteString(m.String())
	}
	return fmt.Errorf("%w: %d message(s):%s", ErrValidation, len(msgs), b.String())
}

// Close destroys the instance. Devices opened from it must be closed first.
func (in *Instance) Close() {
	if in == nil || in.closed {
		return
	}
	in.closed = true
	if in.messenger != 0 {
		destroy := instanceProc(in.handle, "vkDestroyDebugUtilsMessengerEXT")
		C.vkattn_destroy_messenger(destroy, C.vkattn_dispatchable(unsafe.Pointer(in.handle)), in.messenger)
		in.self.Delete()
	}
	vk.DestroyInstance(in.handle, nil)
}
