#include "io/file_map.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/error.h"

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
    }
    close(fd);
    return m;
}

void file_map_close(file_map *m)
{
    if (m->map)
        munmap(m->map, m->size);
    m->map = NULL;
    m->size = 0;
}
