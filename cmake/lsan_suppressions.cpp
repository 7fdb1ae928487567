// Built into every executable of a sanitizer build (ANCHORCTX_SANITIZE; CMakeLists.txt):
// LeakSanitizer's built-in suppressions, so `ctest` in such a build needs no LSAN_OPTIONS.
//
// - fontconfig (reached through cairo's text when a report draws its plots) keeps its
//   configuration and font patterns for the life of the process and frees nothing at exit; LSan
//   reports those as leaks. They are not ours, and freeing them (FcFini) while any other part of
//   the process might still use fontconfig is unsafe, so they are suppressed by library name.
// - libomp (clang's OpenMP runtime; CI's sanitizer build uses clang) keeps each thread's
//   descriptor for the life of the process: a test that changes the thread count leaves the
//   descriptors of threads it no longer uses, allocated inside libomp, for the runtime to reuse.
extern "C" const char* __lsan_default_suppressions() {
  return "leak:libfontconfig.so\n"
         "leak:libomp.so\n";
}
