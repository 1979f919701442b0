#include "io/file_map.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/error.h"

#ifdef REPAE_FUZZ
static struct {
    void *map;
    size_t size;
} live[64];

static void track(void *map, size_t size, int add)
{
    for (int i = 0; i < 64; i++)
        if (add ? !live[i].map : live[i].map == map) {
            live[i].map = add ? map : NULL;
            live[i].size = size;
            return;
        }
}

void file_map_release_all(void)
{
    for (int i = 0; i < 64; i++)
        if (live[i].map) {
            munmap(live[i].map, live[i].size);
            live[i].map = NULL;
        }
}
#else
#define track(map, size, add) ((void)0)
#endif

file_map file_map_open(const char *path)
{
    /* O_NONBLOCK: opening a FIFO without a writer would otherwise block in
     * open() itself, before fstat could tell us what it is. */
    int fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
    if (fd < 0)
        die("cannot open '%s': %s", path, strerror(errno));
    struct stat sb;
    if (fstat(fd, &sb) != 0)
        die("cannot stat '%s': %s", path, strerror(errno));
    if (!S_ISREG(sb.st_mode))
        die("'%s' is not a regular file (%s)", path,
            S_ISDIR(sb.st_mode)    ? "a directory"
            : S_ISFIFO(sb.st_mode) ? "a FIFO"
            : S_ISSOCK(sb.st_mode) ? "a socket"
            : S_ISCHR(sb.st_mode) || S_ISBLK(sb.st_mode) ? "a device"
                                                           : "not a plain file");
    static const uint8_t empty[1];
    file_map m = {empty, (size_t)sb.st_size, NULL};
    if (sb.st_size > 0) {
        m.map = mmap(NULL, m.size, PROT_READ, MAP_PRIVATE, fd, 0);
        if (m.map == MAP_FAILED)
            die("cannot map '%s': %s", path, strerror(errno));
        m.data = m.map;
        track(m.map, m.size, 1);
    }
    close(fd);
    return m;
}

void file_map_close(file_map *m)
{
    if (m->map) {
        track(m->map, m->size, 0);
        munmap(m->map, m->size);
    }
    m->map = NULL;
    m->size = 0;
}
