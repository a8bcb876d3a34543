//! Data-parallel training across processes. With the `mpi` feature, a
//! process started by `mpirun -np N` (N > 1) joins MPI's world and installs
//! it as the runtime's [`Collective`](crate::runtime::collective::Collective);
//! anywhere else, and with `-np 1`, gradc runs as one process, as without
//! the feature.

/// The MPI world of a run of several processes, while it lasts.
pub struct Distributed {
    #[cfg(feature = "mpi")]
    world: std::sync::Arc<mpi_world::World>,
    #[cfg(feature = "mpi")]
    _universe: mpi::environment::Universe,
}

impl Distributed {
    /// This process's rank.
    pub fn rank(&self) -> usize {
        crate::runtime::collective::rank_and_ranks().0
    }

    /// Ends the whole run after this rank failed: the other ranks stop (MPI
    /// aborts them) instead of waiting for this one forever.
    pub fn abort(&self, code: i32) -> ! {
        #[cfg(feature = "mpi")]
        {
            self.world.abort(code)
        }
        #[cfg(not(feature = "mpi"))]
        {
            std::process::exit(code)
        }
    }
}

/// Joins MPI's world when this process was started by `mpirun` with more
/// than one process (and gradc was built with the `mpi` feature); None
/// otherwise.
pub fn init() -> Result<Option<Distributed>, crate::Error> {
    #[cfg(feature = "mpi")]
    {
        mpi_world::init()
    }
    #[cfg(not(feature = "mpi"))]
    {
        match launched_by_mpirun() {
            // Each process would train alone and write the same files.
            true => Err(crate::Error::Usage(
                "started by mpirun with several processes, but this gradc was built without the `mpi` feature: build it with --features mpi".into(),
            )),
            false => Ok(None),
        }
    }
}

/// Whether an MPI launcher started this process with more than one rank.
fn launched_by_mpirun() -> bool {
    [
        "OMPI_COMM_WORLD_SIZE",
        "PMI_SIZE",
        "PMIX_SIZE",
        "MPI_LOCALNRANKS",
    ]
    .iter()
    .filter_map(|v| std::env::var(v).ok())
    .any(|n| n.trim().parse::<usize>().is_ok_and(|n| n > 1))
}

#[cfg(feature = "mpi")]
mod mpi_world {
    use super::Distributed;
    use crate::runtime::collective::Collective;
    use mpi::collective::SystemOperation;
    use mpi::topology::SimpleCommunicator;
    use mpi::traits::*;
    use std::sync::{Arc, Mutex};

    /// MPI's world communicator. MPI is initialized for calls from any
    /// thread, one at a time (`MPI_THREAD_SERIALIZED` or more), and the
    /// mutex makes them one at a time.
    pub(super) struct World {
        comm: Mutex<Comm>,
        rank: usize,
        ranks: usize,
    }

    /// The communicator, and the send buffers of the sums (MPI sums from one
    /// buffer into another), kept from step to step.
    struct Comm {
        world: SimpleCommunicator,
        send32: Vec<f32>,
        send64: Vec<f64>,
    }

    // SAFETY: the communicator is a handle that MPI lets any thread use when
    // MPI runs at MPI_THREAD_SERIALIZED or above (checked in `init`), and
    // every use goes through the mutex, so no two threads call MPI at once.
    unsafe impl Send for World {}
    unsafe impl Sync for World {}

    impl World {
        fn with<R>(&self, f: impl FnOnce(&mut Comm) -> R) -> Result<R, String> {
            let mut comm = self
                .comm
                .lock()
                .map_err(|_| "the MPI communicator's lock was poisoned".to_string())?;
            Ok(f(&mut comm))
        }

        pub(super) fn abort(&self, code: i32) -> ! {
            match self.comm.try_lock() {
                Ok(comm) => comm.world.abort(code),
                Err(std::sync::TryLockError::Poisoned(p)) => p.into_inner().world.abort(code),
                // Held by an exchange (this thread panicked inside one, or
                // another thread waits in one): abort MPI's world directly.
                Err(std::sync::TryLockError::WouldBlock) => {
                    // SAFETY: MPI is initialized (the world exists) and
                    // MPI_Abort may be called from any thread at this
                    // threading level; it does not return.
                    unsafe {
                        mpi::ffi::MPI_Abort(mpi::ffi::RSMPI_COMM_WORLD, code);
                    }
                    std::process::exit(code)
                }
            }
        }
    }

    /// The runtime's view of the world, shared with [`Distributed`].
    struct Shared(Arc<World>);

    impl Collective for Shared {
        fn rank(&self) -> usize {
            self.0.rank
        }
        fn ranks(&self) -> usize {
            self.0.ranks
        }
        fn all_reduce_sum_f32(&self, buf: &mut [f32]) -> Result<(), String> {
            self.0.with(|c| {
                c.send32.clear();
                c.send32.extend_from_slice(buf);
                c.world
                    .all_reduce_into(&c.send32[..], buf, SystemOperation::sum());
            })
        }
        fn all_reduce_sum_f64(&self, buf: &mut [f64]) -> Result<(), String> {
            self.0.with(|c| {
                c.send64.clear();
                c.send64.extend_from_slice(buf);
                c.world
                    .all_reduce_into(&c.send64[..], buf, SystemOperation::sum());
            })
        }
        fn agree(&self, value: u64) -> Result<bool, String> {
            self.0.with(|c| {
                let (mut lo, mut hi) = (0u64, 0u64);
                c.world
                    .all_reduce_into(&value, &mut lo, SystemOperation::min());
                c.world
                    .all_reduce_into(&value, &mut hi, SystemOperation::max());
                lo == hi
            })
        }
    }

    pub(super) fn init() -> Result<Option<Distributed>, crate::Error> {
        if !super::launched_by_mpirun() {
            return Ok(None);
        }
        let Some((universe, threading)) =
            mpi::initialize_with_threading(mpi::Threading::Serialized)
        else {
            return Err(crate::Error::Usage("MPI was initialized already".into()));
        };
        if threading < mpi::Threading::Serialized {
            return Err(crate::Error::Usage(format!(
                "the MPI library gives {threading:?} threading; gradc needs Serialized (MPI_THREAD_SERIALIZED) or Multiple"
            )));
        }
        let comm = universe.world();
        let (rank, ranks) = (comm.rank() as usize, comm.size() as usize);
        if ranks < 2 {
            // mpirun said several processes, MPI's world has one: gradc was
            // linked with another MPI than the one that started it.
            return Err(crate::Error::Usage(
                "mpirun started several processes, but each is alone in its MPI world: build gradc against the MPI library of this mpirun".into(),
            ));
        }
        let world = Arc::new(World {
            comm: Mutex::new(Comm {
                world: comm,
                send32: Vec::new(),
                send64: Vec::new(),
            }),
            rank,
            ranks,
        });
        crate::runtime::collective::set_collective(Box::new(Shared(world.clone())))
            .map_err(crate::Error::Usage)?;
        // A panic on one rank must end the run: unwinding would finalize MPI,
        // which waits for the other ranks, themselves waiting in an exchange.
        let on_panic = world.clone();
        let report = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            report(info);
            eprintln!("gradc: rank {}: panicked; ending the run", on_panic.rank);
            on_panic.abort(101)
        }));
        Ok(Some(Distributed {
            world,
            _universe: universe,
        }))
    }
}
