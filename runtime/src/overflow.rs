//! Stack-overflow detection (placeholder).
