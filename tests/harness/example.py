# SPDX-License-Identifier: LGPL-2.1-or-later
"""The example client (examples/shmem-hello.c) as a user builds and runs it:
compiled with what `pkg-config --cflags --libs libshmem` says of an installed
tree, then two of them greeting each other through a broker of that tree.

    flags = example.pkg_config(tc, PKG_CONFIG, pcdir, sysroot, "--cflags", "--libs", "libshmem")
    exe = example.build(tc, CC, src, flags, out)
    example.greet(tc, exe, broker_exe, workdir, libdir, version)
"""

import os
import subprocess

from .broker import Broker


def pkg_config(tc, pkg_config, pcdir, sysroot, *args):
    """pkg-config's words for @args with the modules of @pcdir only, none of the machine's."""
    env = dict(os.environ, PKG_CONFIG_LIBDIR=pcdir, PKG_CONFIG_SYSROOT_DIR=sysroot)
    env.pop("PKG_CONFIG_PATH", None)
    r = subprocess.run([pkg_config, *args], capture_output=True, text=True, env=env)
    tc.assertEqual(r.returncode, 0, f"pkg-config {' '.join(args)}: {r.stderr}")
    return r.stdout.split()


def build(tc, cc, src, flags, exe, extra=()):
    r = subprocess.run([cc, "-std=c11", "-Wall", "-Wextra", "-Werror", *extra, "-o", exe, src, *flags],
                       capture_output=True, text=True)
    tc.assertEqual(r.returncode, 0, f"building the example:\n{r.stderr}")
    return exe


def greet(tc, exe, broker_exe, workdir, libdir, version):
    """Two of @exe (linked with @libdir's libshmem.so.0) greet each other through @broker_exe."""
    env = dict(os.environ, LD_LIBRARY_PATH=libdir)
    ldd = subprocess.run(["ldd", exe], capture_output=True, text=True, env=env).stdout
    tc.assertIn(f"libshmem.so.0 => {libdir}/libshmem.so.0", ldd)
    run = os.path.join(workdir, "run")
    os.mkdir(run)
    broker = Broker([broker_exe, "--no-config"], run, os.path.join(workdir, "broker.log"))
    try:
        env["SHMEM_BROKER_SOCKET"] = broker.socket
        a = subprocess.Popen([exe, "greet", "20"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                             env=env)
        first = a.stdout.readline()
        tc.assertEqual(first, f"attached to 'greet' as peer 0 of 16 (libshmem {version})\n", broker.log())
        b = subprocess.Popen([exe, "greet", "20"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                             env=env)
        out_b, _ = b.communicate(timeout=30)
        rest, _ = a.communicate(timeout=30)
        tc.assertEqual(b.returncode, 0, out_b)
        tc.assertEqual(a.returncode, 0, first + rest)
        tc.assertEqual(out_b, f"attached to 'greet' as peer 1 of 16 (libshmem {version})\n"
                              f"peer 0 says: hello from pid {a.pid}\n")
        tc.assertEqual(rest, f"peer 1 says: hello from pid {b.pid}\n")
        tc.assertEqual(broker.stop(), 0, broker.log())
    finally:
        broker.close()
