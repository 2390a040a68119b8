/* A shim loaded into arun with LD_PRELOAD by the fault suite (tests/faults.rs).
 *
 * It watches the file operations that make a run durable, in the arun process only:
 *   - ARUN_SHIM_LOG=<file>: appends one line per operation to <file>:
 *       `lock <path>`    a lock file created (open with O_CREAT of a path ending in `.lock`),
 *       `fsync <path>`   fsync or fdatasync of an open file or directory,
 *       `rename <from> <to>`.
 *   - ARUN_KILL_AT_LOCK=<k>: SIGKILLs arun right after it creates its k-th lock file, while
 *     the lock is held: what a kill -9 or a power cut in the middle of a git operation leaves.
 *   - ARUN_KILL_AT_RENAME=<k>, ARUN_KILL_RENAMES_TO=<text>: SIGKILLs arun right after its k-th
 *     rename to a path that contains <text> (e.g. `/answers/`: an answer just saved).
 *   - ARUN_KILL_NOTE=<file>: appends `killed` to <file> right before that kill, so that a test
 *     can order the kill among lines that other processes append there.
 *   - ARUN_KILL_LOCKS_UNDER=<text>: counts, for ARUN_KILL_AT_LOCK, only the lock files whose
 *     path contains <text> (e.g. `/.git/worktrees/` for the workers' own work trees).
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
static const char *kill_under = NULL;
static long kill_at_rename = 0;
static long renames = 0;
static const char *kill_renames_to = NULL;

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
    kill_under = getenv("ARUN_KILL_LOCKS_UNDER");
    const char *r = getenv("ARUN_KILL_AT_RENAME");
    if (r) kill_at_rename = atol(r);
    kill_renames_to = getenv("ARUN_KILL_RENAMES_TO");
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

/* SIGKILL, noted first in ARUN_KILL_NOTE when set. */
static void die(void) {
    const char *note_path = getenv("ARUN_KILL_NOTE");
    if (note_path) {
        int fd = real_open(note_path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
        ssize_t ignored = write(fd, "killed\n", 7);
        (void)ignored;
        close(fd);
    }
    kill(getpid(), SIGKILL);
}

static int ends_with(const char *text, const char *end) {
    size_t t = strlen(text), e = strlen(end);
    return t >= e && strcmp(text + t - e, end) == 0;
}

static void opened(const char *path, int flags, int fd) {
    if (!active || fd < 0 || !(flags & O_CREAT) || !ends_with(path, ".lock")) return;
    char full[PATH_MAX];
    const char *shown = realpath(path, full) ? full : path;
    note("lock", shown, NULL);
    if (kill_under && !strstr(shown, kill_under)) return;
    locks++;
    if (kill_at > 0 && locks == kill_at) die();
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
        const char *shown = realpath(to, full) ? full : to;
        note("rename", from, shown);
        if (kill_at_rename > 0 && (!kill_renames_to || strstr(shown, kill_renames_to)) &&
            ++renames == kill_at_rename)
            die();
    }
    return result;
}
