//! Sans-IO SoftEther protocol (in progress).
