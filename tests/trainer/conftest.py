"""Trainer tests run single-threaded BLAS, as worker processes do.

On a shared 2-core machine a multi-threaded BLAS spins for small matrices and runs the
small networks of these tests many times slower; workers run with one thread for that reason.
"""

from threadpoolctl import threadpool_limits

threadpool_limits(1)
