/* A shim loaded into arun with LD_PRELOAD by the fault suite (tests/faults.rs).
 *
 * It watches the file operations that make a run durable, in the arun process only:
 *   - ARUN_SHIM_LOG=<file>: appends one line per operation to <file>:
 *       `lock <path>`    a lock file created (open with O_CREAT of a path ending in `.lock`),
 *       `fsync <path>`   fsync or fdatasync of an open file or directory,
 *       `rename <from> <to>`.
 *   - ARUN_KILL_AT_LOCK=<k>: SIGKILLs arun right after it creates its k-th lock file, while
 *     the lock is held: what a kill -9 or a power cut in the middle of a git operation leaves.
 *
 * Children (the agent, the trainer, sh) do not get the shim: it removes itself from the
 * environment when it loads.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static int active = 0;
static int log_fd = -1;
static long kill_at = 0;
static long locks = 0;

static int (*real_open)(const char *, int, ...);
static int (*real_open64)(const char *, int, ...);
static int (*real_fsync)(int);
static int (*real_fdatasync)(int);
static int (*real_rename)(const char *, const char *);

__attribute__((constructor)) static void start(void) {
    real_open = dlsym(RTLD_NEXT, "open");
    real_open64 = dlsym(RTLD_NEXT, "open64");
    real_fsync = dlsym(RTLD_NEXT, "fsync");
    real_fdatasync = dlsym(RTLD_NEXT, "fdatasync");
    real_rename = dlsym(RTLD_NEXT, "rename");
    char exe[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (n <= 0) return;
    exe[n] = 0;
    const char *name = strrchr(exe, '/');
    name = name ? name + 1 : exe;
    if (strcmp(name, "arun") != 0) return;
    unsetenv("LD_PRELOAD");
    active = 1;
    const char *log = getenv("ARUN_SHIM_LOG");
    if (log) log_fd = real_open(log, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    const char *k = getenv("ARUN_KILL_AT_LOCK");
    if (k) kill_at = atol(k);
}

static void note(const char *what, const char *a, const char *b) {
    if (log_fd < 0) return;
    char line[2 * PATH_MAX + 32];
    int len = b ? snprintf(line, sizeof line, "%s %s %s\n", what, a, b)
                : snprintf(line, sizeof line, "%s %s\n", what, a);
    if (len > 0 && (size_t)len < sizeof line) {
        ssize_t ignored = write(log_fd, line, (size_t)len);
        (void)ignored;
    }
}

static int ends_with(const char *text, const char *end) {
    size_t t = strlen(text), e = strlen(end);
    return t >= e && strcmp(text + t - e, end) == 0;
}

static void opened(const char *path, int flags, int fd) {
    if (!active || fd < 0 || !(flags & O_CREAT) || !ends_with(path, ".lock")) return;
    char full[PATH_MAX];
    note("lock", realpath(path, full) ? full : path, NULL);
    locks++;
    if (kill_at > 0 && locks == kill_at) kill(getpid(), SIGKILL);
}

static int open_with(int (*real)(const char *, int, ...), const char *path, int flags,
                     va_list args) {
    mode_t mode = 0;
    if (flags & (O_CREAT | O_TMPFILE)) mode = (mode_t)va_arg(args, int);
    int fd = real(path, flags, mode);
    opened(path, flags, fd);
    return fd;
}

int open(const char *path, int flags, ...) {
    va_list args;
    va_start(args, flags);
    int fd = open_with(real_open, path, flags, args);
    va_end(args);
    return fd;
}

int open64(const char *path, int flags, ...) {
    va_list args;
    va_start(args, flags);
    int fd = open_with(real_open64 ? real_open64 : real_open, path, flags, args);
    va_end(args);
    return fd;
}

static void synced(int fd) {
    if (!active || log_fd < 0) return;
    char link[64], path[PATH_MAX];
    snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
    ssize_t n = readlink(link, path, sizeof path - 1);
    if (n <= 0) return;
    path[n] = 0;
    note("fsync", path, NULL);
}

int fsync(int fd) {
    int result = real_fsync(fd);
    synced(fd);
    return result;
}

int fdatasync(int fd) {
    int result = real_fdatasync(fd);
    synced(fd);
    return result;
}

int rename(const char *from, const char *to) {
    int result = real_rename(from, to);
    if (active && result == 0) {
        char full[PATH_MAX];
        note("rename", from, realpath(to, full) ? full : to);
    }
    return result;
}
