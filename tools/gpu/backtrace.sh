#!/usr/bin/env bash
# Runs a command with a SIGSEGV/SIGABRT handler preloaded that prints the stack, then resolves
# the frames with addr2line. For crashes on the GPU machine, which has no gdb.
#   tools/gpu/backtrace.sh ./build-gpu/tests/io/io_test_safetensors_torch [args]
set -uo pipefail
dir=$(mktemp -d)
cat >"$dir/segv.c" <<'C'
#include <execinfo.h>
#include <signal.h>
#include <unistd.h>
static void on_signal(int sig) {
  void* frames[64];
  int n = backtrace(frames, 64);
  backtrace_symbols_fd(frames, n, 2);
  _exit(128 + sig);
}
__attribute__((constructor)) static void install(void) {
  signal(SIGSEGV, on_signal);
  signal(SIGABRT, on_signal);
  signal(SIGBUS, on_signal);
}
C
cc -shared -fPIC -o "$dir/segv.so" "$dir/segv.c" || exit 1
LD_PRELOAD="$dir/segv.so" "$@" 2>"$dir/err"
rc=$?
# Frames look like "/path/bin(+0x1234)[0x...]" or "/path/lib.so(symbol+0x10)[0x...]".
while IFS= read -r line; do
  if [[ $line =~ ^([^\(]+)\(\+(0x[0-9a-f]+)\) ]]; then
    echo "$line  =>  $(addr2line -e "${BASH_REMATCH[1]}" -f -C -i "${BASH_REMATCH[2]}" 2>/dev/null | paste -sd' ')"
  else
    echo "$line"
  fi
done <"$dir/err" | tail -60
exit $rc
