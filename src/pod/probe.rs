//! Container probes (filled in next).
