/*
 * glibc compatibility of the redistributable binary (SSD_PORTABLE builds, x86-64 Linux only).
 *
 * The prebuild must load on glibc 2.28 (Node 20's floor) although it is linked against a newer glibc.
 * Code that newer glibc compiles against binds some symbols to versions that 2.28 lacks:
 *   - glibc 2.34 moved libpthread, libdl and librt into libc and gave their functions new versions
 *     (pthread_create@GLIBC_2.34, ...); referenced by libstdc++ (std::thread), our thread pool and
 *     the static CUDA runtime. The original versions are still exported, so each is forwarded here
 *     to its original version: one hidden jump, the same function on every glibc.
 *   - __libc_single_threaded (2.32) is read by libstdc++'s reference counts; defined here as 0
 *     ("maybe multi-threaded"), which keeps the atomic path, always correct.
 *   - arc4random (2.36) is referenced by libstdc++'s std::random_device, which nothing here calls;
 *     defined here over getrandom(2).
 * Every definition is hidden: the binary's own references bind to them at link time and nothing is
 * exported (the version script exports only the Node-API entry points). scripts/check-binary.js
 * fails the prebuild if any symbol version newer than 2.28 remains.
 */
#if !defined(__x86_64__) || !defined(__linux__)
#error "glibc_compat.c is for x86-64 Linux builds (SSD_PORTABLE)"
#endif

#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/syscall.h>
#include <unistd.h>

/* Defines hidden `name`, a tail jump to `name@version` (the symbol's original version). */
#define SSD_FORWARD(name, version)                                \
  __asm__(".symver ssd_old_" #name ", " #name "@" version "\n"    \
          ".pushsection .text\n"                                  \
          ".globl " #name "\n"                                    \
          ".hidden " #name "\n"                                   \
          ".type " #name ", @function\n"                          \
          #name ":\n"                                             \
          "  jmp ssd_old_" #name "@PLT\n"                         \
          ".size " #name ", . - " #name "\n"                      \
          ".popsection\n");

/* libdl */
SSD_FORWARD(dlopen, "GLIBC_2.2.5")
SSD_FORWARD(dlclose, "GLIBC_2.2.5")
SSD_FORWARD(dlsym, "GLIBC_2.2.5")
SSD_FORWARD(dlvsym, "GLIBC_2.2.5")
SSD_FORWARD(dlerror, "GLIBC_2.2.5")
SSD_FORWARD(dlmopen, "GLIBC_2.3.4")

/* librt */
SSD_FORWARD(shm_open, "GLIBC_2.2.5")
SSD_FORWARD(shm_unlink, "GLIBC_2.2.5")

/* libpthread: threads, keys, once */
SSD_FORWARD(pthread_create, "GLIBC_2.2.5")
SSD_FORWARD(pthread_detach, "GLIBC_2.2.5")
SSD_FORWARD(pthread_join, "GLIBC_2.2.5")
SSD_FORWARD(pthread_kill, "GLIBC_2.2.5")
SSD_FORWARD(pthread_once, "GLIBC_2.2.5")
SSD_FORWARD(pthread_key_create, "GLIBC_2.2.5")
SSD_FORWARD(__pthread_key_create, "GLIBC_2.2.5")
SSD_FORWARD(pthread_key_delete, "GLIBC_2.2.5")
SSD_FORWARD(pthread_getspecific, "GLIBC_2.2.5")
SSD_FORWARD(pthread_setspecific, "GLIBC_2.2.5")

/* libpthread: mutexes, condition variables, read-write locks, spin locks */
SSD_FORWARD(pthread_mutex_trylock, "GLIBC_2.2.5")
SSD_FORWARD(pthread_mutexattr_init, "GLIBC_2.2.5")
SSD_FORWARD(pthread_mutexattr_destroy, "GLIBC_2.2.5")
SSD_FORWARD(pthread_mutexattr_settype, "GLIBC_2.2.5")
SSD_FORWARD(pthread_mutexattr_setpshared, "GLIBC_2.2.5")
SSD_FORWARD(pthread_condattr_setpshared, "GLIBC_2.2.5")
SSD_FORWARD(pthread_rwlock_init, "GLIBC_2.2.5")
SSD_FORWARD(pthread_rwlock_destroy, "GLIBC_2.2.5")
SSD_FORWARD(pthread_rwlock_rdlock, "GLIBC_2.2.5")
SSD_FORWARD(pthread_rwlock_wrlock, "GLIBC_2.2.5")
SSD_FORWARD(pthread_rwlock_tryrdlock, "GLIBC_2.2.5")
SSD_FORWARD(pthread_rwlock_trywrlock, "GLIBC_2.2.5")
SSD_FORWARD(pthread_rwlock_timedrdlock, "GLIBC_2.2.5")
SSD_FORWARD(pthread_rwlock_timedwrlock, "GLIBC_2.2.5")
SSD_FORWARD(pthread_rwlock_unlock, "GLIBC_2.2.5")
SSD_FORWARD(pthread_rwlockattr_init, "GLIBC_2.2.5")
SSD_FORWARD(pthread_rwlockattr_destroy, "GLIBC_2.2.5")
SSD_FORWARD(pthread_rwlockattr_setpshared, "GLIBC_2.2.5")
SSD_FORWARD(pthread_spin_init, "GLIBC_2.2.5")
SSD_FORWARD(pthread_spin_destroy, "GLIBC_2.2.5")
SSD_FORWARD(pthread_spin_lock, "GLIBC_2.2.5")
SSD_FORWARD(pthread_spin_trylock, "GLIBC_2.2.5")
SSD_FORWARD(pthread_spin_unlock, "GLIBC_2.2.5")

/* libpthread: semaphores */
SSD_FORWARD(sem_init, "GLIBC_2.2.5")
SSD_FORWARD(sem_destroy, "GLIBC_2.2.5")
SSD_FORWARD(sem_wait, "GLIBC_2.2.5")
SSD_FORWARD(sem_trywait, "GLIBC_2.2.5")
SSD_FORWARD(sem_timedwait, "GLIBC_2.2.5")
SSD_FORWARD(sem_post, "GLIBC_2.2.5")

__attribute__((visibility("hidden"))) char __libc_single_threaded = 0;

__attribute__((visibility("hidden"))) uint32_t arc4random(void) {
  uint32_t value = 0;
  unsigned char* out = (unsigned char*)&value;
  size_t have = 0;
  while (have < sizeof value) {
    long n = syscall(SYS_getrandom, out + have, sizeof value - have, 0);
    if (n > 0) {
      have += (size_t)n;
    } else if (n < 0 && errno == EINTR) {
      continue;
    } else {
      break;
    }
  }
  if (have < sizeof value) {  /* kernels before 3.17 lack getrandom */
    int fd = open("/dev/urandom", O_RDONLY | O_CLOEXEC);
    while (fd >= 0 && have < sizeof value) {
      ssize_t n = read(fd, out + have, sizeof value - have);
      if (n > 0) have += (size_t)n;
      else if (!(n < 0 && errno == EINTR)) break;
    }
    if (fd >= 0) close(fd);
  }
  if (have < sizeof value) abort(); /* as glibc's arc4random does without an entropy source */
  return value;
}
