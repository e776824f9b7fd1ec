//! Netns-scoped network configuration (see issue 3).
