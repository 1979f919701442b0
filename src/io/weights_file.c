#include "io/weights_file.h"

#include <inttypes.h>

#include "core/error.h"
#include "io/file_map.h"
#include "io/torch_file.h"

safetensors *weights_open(const char *path)
{
    file_map fm = file_map_open(path); /* refuses FIFOs and directories before reading */
    if (torch_file_sniff(fm.data, fm.size) != TORCH_NOT)
        return torch_file_open_map(path, fm);
    /* A safetensors file starts with a little-endian header length and '{'. */
    int looks_st = 0;
    if (fm.size >= 10) {
        uint64_t hl = 0;
        for (int i = 7; i >= 0; i--)
            hl = hl << 8 | fm.data[i];
        looks_st = hl <= fm.size - 8 && fm.data[8] == '{';
    }
    if (fm.size >= 10 && !looks_st && fm.data[0] == 0x80 && fm.data[1] >= 2 && fm.data[1] <= 5)
        die("'%s': a bare Python pickle, not a weights file (a PyTorch file is a ZIP archive or starts with "
            "torch's magic number)", path);
    if (fm.size >= 10 && !looks_st)
        die("'%s': not a weights file: neither safetensors (8-byte header length, then '{') nor a PyTorch "
            ".pt/.pth (a ZIP archive, or the legacy magic number)", path);
    file_map_close(&fm);
    return safetensors_open(path); /* maps again: its own messages for short or broken files */
}
