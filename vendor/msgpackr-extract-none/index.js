// Stand-in for the optional native accelerator of msgpackr (see README.md): exporting null
// makes msgpackr use its pure-JavaScript string decoding, its documented fallback.
module.exports = null;
