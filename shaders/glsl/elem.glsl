// The matrix tiers' element type ELEM: fp16, or bf16 (GL_EXT_bfloat16) with ELEM_BF16 defined;
// such a kernel takes K and V (and, in the forward, q) of that type only. Include before any
// declaration (it enables an extension); io.glsl then defines elemRound.
#ifndef ELEM_GLSL
#define ELEM_GLSL

#ifdef ELEM_BF16
#extension GL_EXT_bfloat16 : require
#define ELEM bfloat16_t
#define ELEM_DTYPE DT_BF16
#else
#define ELEM float16_t
#define ELEM_DTYPE DT_F16
#endif

#endif
