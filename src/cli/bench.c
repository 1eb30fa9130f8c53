/*
 * bench.c — `factum bench engine`: in-process figures for the engine beside this disk's raw
 * ceiling. (Being written; see docs/bench.md once it lands.)
 */
#include "cli.h"

#include <stdio.h>

int cli_bench(int argc, char **argv) {
    (void)argc, (void)argv;
    return cli_fail(CLI_ERROR, "bench: not built yet");
}
