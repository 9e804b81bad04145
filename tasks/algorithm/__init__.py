"""The algorithm: images, superpixels, embedding, clustering, CAVs and TCAV, the statistical test, SSC/SDC."""
