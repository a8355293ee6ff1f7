//! nnU-Net's `RemoveLabelTansform(-1, 0)`: after the spatial transform, the padding label -1
//! becomes background 0.

/// Replaces every `from` label with `to`.
pub fn replace_label(seg: &mut [i16], from: i16, to: i16) {
    seg.iter_mut().filter(|v| **v == from).for_each(|v| *v = to);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn minus_one_becomes_zero() {
        let mut seg = vec![-1, 0, 2, -1, 1];
        replace_label(&mut seg, -1, 0);
        assert_eq!(seg, vec![0, 0, 2, 0, 1]);
    }
}
